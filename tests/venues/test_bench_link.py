"""`marginsync bench link` end to end on a small link: it deploys, opens split books, certifies
them all, then re-certifies the ones that trade, and reports what it measured."""

from __future__ import annotations

from pathlib import Path

from offchain.bench.link import run


def test_bench_link__certifies_every_book_and_each_change(tmp_path: Path) -> None:
    out = tmp_path / "link.json"
    result = run(out, accounts=4, venues=2, steps=2, changes=2, progress=lambda _: None)
    assert out.exists()
    # Four traders and the development counterparty every trade was made against.
    assert result["burst"]["certificates"] == 5
    assert result["steady"]["lag_ms"]["p50"] > 0  # the changes were certified
    assert result["certificate_gas_mean"] > 100_000  # a BLS check on-chain at least
