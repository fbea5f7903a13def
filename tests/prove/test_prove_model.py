"""The proven model against the float model it implements, and the circuit against the proven
model: exactly equal on random books and edge cases, refusing rather than wrapping (H04)."""

from __future__ import annotations

import random
import subprocess

import numpy as np
import pytest

from offchain.prove.layout import (
    ACCOUNT,
    ASSETS,
    SIZE_BITS,
    AccountStatement,
    LayoutError,
    Slot,
    public_words,
)
from offchain.prove.model import ModelError, ProvenModel
from offchain.prove.poseidon import FIELD_MODULUS
from offchain.prove.prover import ZK_DIR, Prover, StatementFalse
from offchain.risk.config import ScenarioMarginConfig
from offchain.risk.portfolio import (
    ScenarioBook,
    build_scenario_grid,
    combine_across_underlyings,
    group_scenario_losses,
    offset_credit_matrix,
)
from offchain.settings import PROJECT_ROOT

TRADER = "0x" + "ab" * 20
E18 = 10**18
E8 = 10**8
CONFIG = ScenarioMarginConfig(correlations={"BTC/ETH": 0.8})
SYMBOLS = ("ETH", "BTC", "SOL", "A3", "A4", "A5", "A6", "A7")


def float_mm(slots: list[Slot], prices_e8: list[int]) -> float:
    """offchain.risk.portfolio's MM for a perps-only account, in USD."""
    grid = build_scenario_grid()
    n = len(slots)
    book = ScenarioBook.build(
        n,
        np.arange(n),
        np.array([s.size / E18 for s in slots]),
        np.zeros(n, dtype=bool),
        np.zeros(n, dtype=bool),
        np.zeros(0, dtype=np.intp),
    )
    losses = group_scenario_losses(
        grid,
        book,
        np.array([prices_e8[s.asset] / E8 for s in slots]),
        np.zeros((0, grid.n_scenarios + 1)),
        CONFIG.perp_contingency_rate,
        CONFIG.short_option_contingency_rate,
    )
    mm = combine_across_underlyings(
        losses=losses,
        group_account=np.zeros(n, dtype=np.intp),
        group_underlying=np.array([s.asset for s in slots], dtype=np.intp),
        n_accounts=1,
        n_underlyings=ASSETS,
        offset_credit=offset_credit_matrix(SYMBOLS, CONFIG.correlations),
        floor_fraction=CONFIG.floor_fraction,
    )
    return float(mm[0])


def random_book(rng: random.Random) -> tuple[list[Slot], list[int]]:
    assets = rng.sample(range(ASSETS), rng.randint(1, ACCOUNT.slots))
    slots = [Slot(a, rng.choice((1, -1)) * rng.randint(1, 10**24)) for a in sorted(assets)]
    prices = [rng.randint(1, 10**6) * E8 + rng.randint(0, E8) for _ in range(ASSETS)]
    return slots, prices


EDGE_BOOKS = {
    "no positions": ([], [0] * ASSETS),
    "one underlying": ([Slot(0, 3 * E18)], [3000 * E8] + [0] * 7),
    "all short": (
        [Slot(0, -5 * E18), Slot(1, -E18), Slot(2, -40 * E18)],
        [3000 * E8, 60000 * E8, 150 * E8] + [0] * 5,
    ),
    "offsetting ETH/BTC": ([Slot(0, 20 * E18), Slot(1, -E18)], [3000 * E8, 60000 * E8] + [0] * 6),
    "hedge without a correlation": (
        [Slot(0, 20 * E18), Slot(2, -400 * E18)],
        [3000 * E8, 0, 150 * E8] + [0] * 5,
    ),
    "maximum size": ([Slot(5, (1 << SIZE_BITS) - 1)], [0] * 5 + [500 * E8, 0, 0]),
    "maximum price": ([Slot(7, -1)], [0] * 7 + [(1 << 64) - 1]),
    "eight underlyings": (
        [Slot(a, (a - 3) * E18 + 1) for a in range(ASSETS)],
        [(a + 1) * 100 * E8 for a in range(ASSETS)],
    ),
}


def statement(
    model: ProvenModel, slots: list[Slot], prices: list[int], mm_delta: int = 0, im_delta: int = 0
) -> list[int]:
    r = model.requirement(slots, prices)
    account = AccountStatement(
        TRADER, tuple(slots), r.mm_micro_usd + mm_delta, r.im_micro_usd + im_delta
    )
    return public_words(ACCOUNT, model.hash, prices, [account])


def test_model__random_books__conservative_and_within_micro_dollars_of_the_float_model(
    proven_model: ProvenModel,
) -> None:
    rng = random.Random(7)
    for _ in range(200):
        slots, prices = random_book(rng)
        exact = float_mm(slots, prices)
        proven = proven_model.requirement(slots, prices).mm_micro_usd / 1e6
        # Never below the real-valued model (up to float error), and above it only by rounding.
        assert proven >= exact * (1 - 1e-12) - 1e-9
        assert proven - exact <= 1e-5 + exact * 1e-12


@pytest.mark.parametrize("name", sorted(EDGE_BOOKS))
def test_model__edge_books__match_the_float_model(proven_model: ProvenModel, name: str) -> None:
    slots, prices = EDGE_BOOKS[name]
    proven = proven_model.requirement(slots, prices)
    assert proven.mm_micro_usd / 1e6 == pytest.approx(float_mm(slots, prices), rel=1e-9, abs=1e-5)
    assert proven.im_micro_usd == -(-proven.mm_micro_usd * proven_model.im_factor_bps // 10_000)


def test_model__offsetting_underlyings__earn_the_configured_credit(
    proven_model: ProvenModel,
) -> None:
    hedged = proven_model.requirement(*EDGE_BOOKS["offsetting ETH/BTC"]).mm_micro_usd
    uncorrelated = proven_model.requirement(*EDGE_BOOKS["hedge without a correlation"]).mm_micro_usd
    # Same standalone losses (20 ETH ≈ 400 SOL ≈ 1 BTC in notional at these prices), but only the
    # configured pair earns credit.
    assert hedged < 0.5 * uncorrelated


def test_model__params_not_exact_in_bps__refused() -> None:
    with pytest.raises(ModelError, match="whole number of basis points"):
        ProvenModel.from_config(ScenarioMarginConfig(perp_contingency_rate=0.03005), SYMBOLS)


def test_model__loss_beyond_64_bits__refused(proven_model: ProvenModel) -> None:
    # H04: a requirement the circuit cannot hold is refused here, not wrapped.
    with pytest.raises(ModelError, match="beyond the circuit"):
        proven_model.requirement([Slot(0, (1 << SIZE_BITS) - 1)], [(1 << 64) - 1] + [0] * 7)


def test_layout__size_beyond_96_bits__refused(proven_model: ProvenModel) -> None:
    # H04: the encoder refuses a size the circuit's slot cannot hold.
    account = AccountStatement(TRADER, (Slot(0, 1 << SIZE_BITS),), 0, 0)
    with pytest.raises(LayoutError, match="does not fit in 96 bits"):
        public_words(ACCOUNT, proven_model.hash, [E8] * ASSETS, [account])


def test_circuit__random_and_edge_books__equal_the_model_exactly(
    proven_model: ProvenModel, prover: Prover
) -> None:
    rng = random.Random(11)
    books = [random_book(rng) for _ in range(8)] + list(EDGE_BOOKS.values())
    for slots, prices in books:
        prover.check(ACCOUNT, statement(proven_model, slots, prices), proven_model.words)


@pytest.mark.parametrize(("mm_delta", "im_delta"), [(1, 0), (-1, 0), (0, 1), (0, -1)])
def test_circuit__requirement_one_micro_dollar_off__refused(
    proven_model: ProvenModel, prover: Prover, mm_delta: int, im_delta: int
) -> None:
    slots, prices = EDGE_BOOKS["offsetting ETH/BTC"]
    with pytest.raises(StatementFalse):
        prover.check(
            ACCOUNT, statement(proven_model, slots, prices, mm_delta, im_delta), proven_model.words
        )


def test_circuit__other_model_parameters__refused(
    proven_model: ProvenModel, prover: Prover
) -> None:
    # P1: parameters that do not hash to the public model hash cannot be used.
    other = ProvenModel.from_config(ScenarioMarginConfig(), SYMBOLS)
    slots, prices = EDGE_BOOKS["offsetting ETH/BTC"]
    with pytest.raises(StatementFalse):
        prover.check(ACCOUNT, statement(proven_model, slots, prices), other.words)


def test_circuit__loss_beyond_64_bits__refused(proven_model: ProvenModel, prover: Prover) -> None:
    # H04: whatever requirement is claimed, a loss of 2^64 µUSD or more has no witness.
    slots, prices = [Slot(0, (1 << SIZE_BITS) - 1)], [(1 << 64) - 1] + [0] * 7
    account = AccountStatement(TRADER, tuple(slots), (1 << 64) - 1, (1 << 64) - 1)
    with pytest.raises(StatementFalse):
        prover.check(
            ACCOUNT, public_words(ACCOUNT, proven_model.hash, prices, [account]), proven_model.words
        )


# ------------------------------------------------------------------ soundness probes
@pytest.fixture(scope="session")
def probes() -> object:
    out = ZK_DIR / "probes"
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "node_modules/.bin/circom2",
            "tests/prove/circuits/probes.circom",
            "--wasm",
            "--r1cs",
            "-l",
            "node_modules/circomlib/circuits",
            "-o",
            str(out.relative_to(PROJECT_ROOT)),
        ],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
    return out / "probes"


HONEST = {"lossRaw": 5 * 10**24 + 3, "loss": 6, "offsetSquared": 10_000 * 49 + 5, "root": 7}


@pytest.mark.parametrize(
    "wrong",
    [
        {"loss": 5},  # rounded down: the remainder check refuses it
        {"loss": 7},  # rounded up twice
        {"lossRaw": 495 * 10**22, "loss": 6},  # rounded up by more than the divisor
        {"lossRaw": 1 << 160, "loss": ((1 << 160) + 10**24 - 1) // 10**24},  # quotient ≥ 2^64
        {"root": 6},  # a square root one too small
        {"root": 8},  # one too large
        {"offsetSquared": FIELD_MODULUS - 1, "root": 0},  # a wrapped negative Q has no root (H04)
    ],
)
def test_probes__witness_off_in_one_value__refused(
    prover: Prover, probes: object, wrong: dict[str, int]
) -> None:
    prover.check_circuit(probes, HONEST)  # type: ignore[arg-type]
    with pytest.raises(StatementFalse):
        prover.check_circuit(probes, {**HONEST, **wrong})  # type: ignore[arg-type]


# ------------------------------------------------------------------ the development ceremony
def test_ptau__points_from_scalars__identical_to_snarkjs_prepare_phase2() -> None:
    subprocess.run(
        ["node", "tools/zk/ptau.mjs", "--self-check", "5"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )


def test_setup__development_ceremony__identical_to_snarkjs_groth16_setup(probes: object) -> None:
    # With δ = 1 the key equals, section by section, snarkjs's from a ptau of the same secrets.
    subprocess.run(
        ["node", "tools/zk/setup.mjs", "--self-check", f"{probes}.r1cs"],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
    )
