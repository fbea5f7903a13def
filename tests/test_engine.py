"""The sync engine: which accounts it selects, and that it stops attesting (fails closed) when
prices, keys, the signer or the clock cannot be trusted (C08–C10, C14, C15, D13, D14)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account

from offchain.attest import Batch, Domain, Entry, digest
from offchain.chain.anvil import free_port
from offchain.chain.attestations import RING_SIZE
from offchain.chain.client import Client
from offchain.chain.deploy import dev_engine_keys
from offchain.feeds import SanitizerConfig, Tick, replay
from offchain.settings import PROJECT_ROOT, Settings
from offchain.sync import (
    Engine,
    EngineConfig,
    EngineHalted,
    EngineKeyError,
    LocalSigner,
    PolicyConfig,
    PolicyInputs,
    SignerUnavailable,
    State,
    dev_submitter_key,
    load_signers,
    select,
)
from offchain.sync.batching import batch_digest
from offchain.sync.keys import ENV_KEYS, ENV_KEYSTORE_PASSWORD, ENV_KEYSTORES
from offchain.sync.policy import DEVIATION, NEAR_HEALTH, REFRESH, needs_proof

DEV_KEYS = [bytes.fromhex(k[2:]) for k in dev_engine_keys(3)]
PRICES = {"ETH": 3_000.0, "BTC": 60_000.0, "SOL": 150.0}
SOURCES = ("a", "b", "c", "d", "e")


# ---------------------------------------------------------------------------- policy (pure)
def inputs(n: int = 3, **over: Any) -> PolicyInputs:
    """Accounts with static IM 1000 / MM 650 and an attestation in force equal to static."""
    base: dict[str, Any] = {
        "fresh_im_usd": np.full(n, 1_000.0),
        "fresh_mm_usd": np.full(n, 650.0),
        "static_im_usd": np.full(n, 1_000.0),
        "static_mm_usd": np.full(n, 650.0),
        "attested_im_usd": np.full(n, 1_000.0),
        "attested_mm_usd": np.full(n, 650.0),
        "attested_live": np.ones(n, dtype=bool),
        "attested_age_s": np.full(n, 10.0),
        "attested_gap_bps": np.zeros(n),
        "equity_usd": np.full(n, 5_000.0),
        "eligible": np.ones(n, dtype=bool),
    }
    base.update({k: np.asarray(v, dtype=base[k].dtype) for k, v in over.items()})
    return PolicyInputs(**base)


CFG = PolicyConfig(threshold_bps=500, min_change_usd=1.0, refresh_window_s=60, max_age_s=300)


def test_needs_proof__only_accounts_the_attestation_alone_makes_liquidatable() -> None:
    # SPEC I35: static MM 650 for all. Equity 900 with fresh MM 1,000 needs a proof; equity
    # 1,100 stays healthy anyway; equity 600 is liquidatable statically; a fresh MM below
    # static loosens; a fresh MM far above is clamped at 5 × static (3,250) and still counts.
    equity = [900.0, 1_100.0, 600.0, 900.0, 3_000.0]
    fresh_mm = np.array([1_000.0, 1_000.0, 1_000.0, 500.0, 1e6])
    need = needs_proof(inputs(5, equity_usd=equity), fresh_mm, CFG)
    assert need.tolist() == [True, False, False, False, True]
    # The clamp binds: equity 3,300 is above the capped MM, so no proof is needed.
    assert not needs_proof(inputs(1, equity_usd=[3_300.0]), np.array([1e6]), CFG)[0]


def test_select__requirement_within_threshold__selects_nobody() -> None:
    sel = select(inputs(fresh_mm_usd=[660.0, 640.0, 650.0]), CFG)  # ±1.5% < 5%
    assert sel.indices.tolist() == []


def test_select__requirement_beyond_relative_and_absolute_threshold__selects_it() -> None:
    sel = select(inputs(fresh_mm_usd=[650.0, 800.0, 650.0], fresh_im_usd=[1e3, 1.2e3, 1e3]), CFG)
    assert sel.indices.tolist() == [1]
    assert sel.reasons[0] & DEVIATION


def test_select__dust_account_moving_below_absolute_floor__is_not_worth_gas() -> None:
    dust = inputs(
        n=1,
        fresh_mm_usd=[0.5],
        fresh_im_usd=[0.8],
        static_mm_usd=[0.2],
        static_im_usd=[0.3],
        attested_mm_usd=[0.2],
        attested_im_usd=[0.3],
    )
    assert len(select(dust, CFG)) == 0  # +150% relative, but only $0.30


def test_select__attestation_near_max_age__refreshed_only_where_it_beats_static() -> None:
    # Accounts 0 and 1 are attested at half of static and their attestations are 250 s old
    # (inside the 60 s refresh window of maxAge 300); account 2's fresh value equals static,
    # so letting its attestation lapse costs nothing.
    sel = select(
        inputs(
            fresh_mm_usd=[325.0, 325.0, 650.0],
            fresh_im_usd=[500.0, 500.0, 1_000.0],
            attested_mm_usd=[325.0, 325.0, 650.0],
            attested_im_usd=[500.0, 500.0, 1_000.0],
            attested_age_s=[250.0, 100.0, 250.0],
        ),
        CFG,
    )
    assert sel.indices.tolist() == [0]
    assert sel.reasons[0] & REFRESH


def test_select__attested_prices_drifting_out_of_band__refresh_before_they_lapse() -> None:
    sel = select(
        inputs(
            fresh_mm_usd=[325.0] * 3,
            fresh_im_usd=[500.0] * 3,
            attested_mm_usd=[325.0] * 3,
            attested_im_usd=[500.0] * 3,
            attested_gap_bps=[10.0, 85.0, 150.0],  # band 100 bps, headroom 80%
            attested_live=[True, True, False],  # the S1 rule: 150 bps is out of the band
        ),
        CFG,
    )
    # 1 is about to lapse (refresh); 2 has lapsed already, so static is in force (deviation).
    assert sorted(sel.indices.tolist()) == [1, 2]


def test_select__clamped_values_equal__no_churn_below_the_verifier_floor() -> None:
    # Fresh MM is 10% of static; the verifier clamps it to 50% either way, and 50% is in force.
    sel = select(
        inputs(
            fresh_mm_usd=[65.0],
            fresh_im_usd=[100.0],
            attested_mm_usd=[80.0],
            attested_im_usd=[120.0],
            n=1,
        ),
        CFG,
    )
    assert len(sel) == 0


def test_select__near_liquidation_first_and_bounded_by_max_accounts() -> None:
    cfg = PolicyConfig(max_accounts=2, max_age_s=300)
    sel = select(
        inputs(
            n=4,
            fresh_mm_usd=[900.0] * 4,
            fresh_im_usd=[1_200.0] * 4,
            equity_usd=[5_000.0, 700.0, 2_000.0, 950.0],
        ),
        cfg,
    )
    assert sel.indices.tolist() == [1, 3]  # health 0.78 and 1.06 first
    assert sel.deferred == 2
    assert sel.reasons[0] & NEAR_HEALTH


def test_select__near_health_account__uses_the_tighter_threshold() -> None:
    # +3% MM: below the 5% threshold, above the near-health 1.25% one.
    sel = select(inputs(n=2, fresh_mm_usd=[669.5, 669.5], equity_usd=[700.0, 5_000.0]), CFG)
    assert sel.indices.tolist() == [0]


def test_select__ineligible_account__never_selected() -> None:
    sel = select(inputs(fresh_mm_usd=[900.0] * 3, eligible=[True, False, True]), CFG)
    assert sorted(sel.indices.tolist()) == [0, 2]


def test_batch_digest__hand_packed__equals_attest_digest_for_random_batches() -> None:
    rng = np.random.default_rng(3)
    domain = Domain(31337, "0x" + "5a" * 20)
    for n in (0, 1, 7, 50):
        batch = Batch(
            sequence=int(rng.integers(1, 2**63)),
            issued_at=int(rng.integers(0, 2**40)),
            price_asset_mask=0b1011,
            prices_e18=tuple(int(p) * 10**12 for p in rng.integers(1, 2**60, size=3)),
            entries=tuple(
                Entry("0x" + os.urandom(20).hex(), int(a), int(b), int(c))
                for a, b, c in rng.integers(0, 2**62, size=(n, 3))
            ),
        )
        assert batch_digest(batch, domain.separator()) == digest(batch, domain)


# ---------------------------------------------------------------------------- engine fixtures
def ticks(
    prices: dict[str, float] | None = None,
    sources: tuple[str, ...] = SOURCES,
    ts: float | None = None,
    overrides: dict[tuple[str, str], float] | None = None,
) -> list[Tick]:
    """One print per (symbol, source); `overrides[(symbol, source)]` replaces a price."""
    ts = time.time() if ts is None else ts
    prices = prices or PRICES
    overrides = overrides or {}
    return [
        Tick(sym, overrides.get((sym, src), p), ts + 0.001 * k, src)
        for sym, p in prices.items()
        for k, src in enumerate(sources)
    ]


class FlakySigner:
    """A dev key that can be switched to fail, or to answer too slowly (D14)."""

    def __init__(self, key: bytes) -> None:
        self.inner = LocalSigner(key)
        self.mode = "ok"

    @property
    def address(self) -> str:
        return self.inner.address

    def sign_batch(self, batch: Batch, domain: Domain, message_digest: bytes) -> bytes:
        if self.mode == "fail":
            raise ConnectionError("HSM unreachable")
        if self.mode == "slow":
            time.sleep(1.0)
        return self.inner.sign_batch(batch, domain, message_digest)


@pytest.fixture
def make_engine(system: Client, tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    made: list[Engine] = []

    def _make(
        *,
        signers: list[Any] | None = None,
        sanitizer: SanitizerConfig | None = None,
        clock: Callable[[], float] = time.time,
        **config: Any,
    ) -> Engine:
        engine = Engine(
            system.chain,
            system.d,
            signers=signers or [LocalSigner(k) for k in DEV_KEYS],
            submitter_key=dev_submitter_key(),
            outbox_path=tmp_path / f"outbox-{len(made)}.sqlite",
            config=EngineConfig(**{"threshold_bps": 0.0, "min_change_usd": 0.0, **config}),
            sanitizer_config=sanitizer or SanitizerConfig(),
            clock=clock,
        )
        made.append(engine)
        return engine

    yield _make
    for engine in made:
        engine.close()


def once(engine: Engine, feed: list[Tick]) -> Any:
    return asyncio.run(engine.once(replay(feed)))


def batches_on_chain(system: Client) -> list[Any]:
    d = system.d
    assert d.attestation_verifier is not None
    head = system.chain.w3.eth.block_number
    events = system.chain.get_events([d.attestation_verifier], d.block, head)
    return [e for e in events if e.name == "BatchApplied"]


def eth_price_e18(engine: Engine, sequence: int) -> int:
    row = engine.outbox.get(sequence)
    assert row is not None
    assert row.batch.price_asset_mask & 1, "ETH is asset 0"
    return row.batch.prices_e18[0]


# ---------------------------------------------------------------------------- sanitiser → engine
def test_once__one_of_five_sources_spikes__attests_at_the_median(  # C08
    system: Client, open_position, make_engine
) -> None:
    opened = open_position(size=10)
    engine = make_engine()
    report = once(engine, ticks(overrides={("ETH", "e"): 3_000_000.0}))
    (outcome,) = report.outcomes
    assert outcome.state == State.CONFIRMED
    assert outcome.applied == 2
    assert eth_price_e18(engine, outcome.sequence) == 3_000 * 10**18
    attested = engine.verifier.functions.appliedEntry(opened.trader).call()
    assert attested[0] == outcome.sequence


def test_once__two_sources_one_times_1000__refuses_rather_than_average(  # C09
    system: Client, open_position, make_engine
) -> None:
    open_position(size=10)
    engine = make_engine(sanitizer=SanitizerConfig(min_sources=2))
    with pytest.raises(EngineHalted, match=r"ETH.*dispersion"):
        once(engine, ticks(sources=("a", "b"), overrides={("ETH", "b"): 3_000_000.0}))
    assert batches_on_chain(system) == []
    assert engine.outbox.rows() == []
    assert engine.metrics.rejected_ticks.labels("dispersion")._value.get() >= 1


def test_once__jump_over_50_percent__untrusted_until_an_independent_source_agrees(  # C10
    system: Client, open_position, make_engine
) -> None:
    open_position(size=10)
    engine = make_engine()
    first = once(engine, ticks())
    assert [o.state for o in first.outcomes] == [State.CONFIRMED]
    # Three of five sources print −53%; the sanitiser holds the jump at one confirmation.
    crash = {"ETH": 1_400.0}
    with pytest.raises(EngineHalted, match="jump_unconfirmed"):
        once(engine, ticks(crash, sources=("a", "b", "c")))
    assert len(batches_on_chain(system)) == 1
    # A fourth, independent source confirms it: now the engine attests at the new level.
    confirmed = once(engine, ticks(crash, sources=("d",)))
    (outcome,) = confirmed.outcomes
    assert outcome.state == State.CONFIRMED
    assert eth_price_e18(engine, outcome.sequence) == 1_400 * 10**18


def test_once__duplicate_and_out_of_order_ticks__dropped_and_price_never_regresses(  # C14
    system: Client, open_position, make_engine
) -> None:
    open_position(size=10)
    engine = make_engine()
    t = time.time()
    feed = ticks(ts=t - 2) + ticks({"ETH": 3_100.0, "BTC": 60_000.0, "SOL": 150.0}, ts=t - 1)
    feed += [
        Tick("ETH", 2_000.0, t - 3, "a"),  # older than a's last print: out of order
        Tick("ETH", 2_000.0, (t - 1) + 0.001 * 1, "b"),  # b's last timestamp again: duplicate
    ]
    report = once(engine, feed)
    (outcome,) = report.outcomes
    assert eth_price_e18(engine, outcome.sequence) == 3_100 * 10**18
    assert engine.metrics.rejected_ticks.labels("out_of_order")._value.get() == 1
    assert engine.metrics.rejected_ticks.labels("duplicate")._value.get() == 1


def test_once__cold_start_with_one_source__no_attestation(  # D13
    system: Client, open_position, make_engine
) -> None:
    open_position(size=10)
    engine = make_engine()
    with pytest.raises(EngineHalted, match="too_few_sources"):
        once(engine, ticks(sources=("a",)))
    assert batches_on_chain(system) == []


@pytest.mark.parametrize("skew_s", [600.0, -600.0])
def test_once__engine_clock_ten_minutes_off_chain_time__detected_and_nothing_attested(  # C15
    system: Client, open_position, make_engine, skew_s: float
) -> None:
    open_position(size=10)

    def clock() -> float:
        return time.time() + skew_s

    engine = make_engine(clock=clock)
    # Ticks stamped by the skewed clock, so only the skew check stands in the way.
    with pytest.raises(EngineHalted, match="clock"):
        once(engine, ticks(ts=clock()))
    assert batches_on_chain(system) == []
    assert engine.outbox.rows() == []
    assert engine.metrics.halts.labels("clock")._value.get() == 1


def test_run_pass__clock_skew_appearing_mid_run__stops_attesting(  # C15, periodic check
    system: Client, open_position, make_engine
) -> None:
    open_position(size=10)
    offset = {"s": 0.0}
    engine = make_engine(clock=lambda: time.time() + offset["s"], skew_check_interval_s=0.01)
    assert once(engine, ticks()).outcomes[0].state == State.CONFIRMED
    offset["s"] = 601.0
    time.sleep(0.02)
    with pytest.raises(EngineHalted, match="ahead of chain time"):
        once(engine, ticks({"ETH": 3_300.0, "BTC": 60_000.0, "SOL": 150.0}, ts=time.time() + 601))
    assert len(batches_on_chain(system)) == 1


# ---------------------------------------------------------------------------- keys and signer
def test_start__fewer_keys_than_threshold__refuses_with_a_clear_error(
    system: Client, make_engine
) -> None:
    engine = make_engine(signers=[LocalSigner(DEV_KEYS[0])])
    with pytest.raises(EngineKeyError, match=r"1 usable engine key.*threshold is 2"):
        engine.start()


def test_start__keys_not_registered_on_the_verifier__refused(system: Client, make_engine) -> None:
    strangers = [LocalSigner(os.urandom(32)) for _ in range(3)]
    with pytest.raises(EngineKeyError, match="not registered"):
        make_engine(signers=strangers).start()


def test_cli_engine__one_key_in_env__exits_nonzero_naming_the_threshold(
    system: Client, settings: Settings, tmp_path: Path
) -> None:
    env = {**os.environ, ENV_KEYS: "0x" + DEV_KEYS[0].hex()}
    env.pop(ENV_KEYSTORES, None)
    proc = subprocess.run(
        [sys.executable, "-m", "offchain.cli", "--rpc-url", settings.rpc_url,
         "--deployments-dir", str(settings.deployments_dir), "engine", "--once", "--dev-keys",
         "--outbox", str(tmp_path / "outbox.sqlite")],
        capture_output=True, text=True, timeout=120, env=env, cwd=PROJECT_ROOT,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "threshold is 2" in proc.stdout.replace("\n", " ")


def test_load_signers__keystores_outside_repo__decrypted_inside_repo__refused(
    tmp_path: Path,
) -> None:
    acct = Account.from_key(DEV_KEYS[1])
    store = tmp_path / "engine-1.json"
    store.write_text(json.dumps(Account.encrypt(DEV_KEYS[1], "pw", kdf="pbkdf2", iterations=2)))
    env = {ENV_KEYSTORES: str(store), ENV_KEYSTORE_PASSWORD: "pw"}
    (signer,) = load_signers(chain_id=1, dev_keys=False, env=env)
    assert signer.address == acct.address
    with pytest.raises(EngineKeyError, match="cannot decrypt"):
        load_signers(chain_id=1, dev_keys=False, env={**env, ENV_KEYSTORE_PASSWORD: "wrong"})
    inside = str(PROJECT_ROOT / "keys" / "engine.json")
    with pytest.raises(EngineKeyError, match="inside the repository"):
        load_signers(chain_id=1, dev_keys=False, env={**env, ENV_KEYSTORES: inside})


def test_load_signers__dev_keys_on_a_public_chain__refused() -> None:
    with pytest.raises(EngineKeyError, match="development keys are public"):
        load_signers(chain_id=1, dev_keys=True, env={})
    with pytest.raises(EngineKeyError, match="no engine keys configured"):
        load_signers(chain_id=31337, dev_keys=False, env={})


@pytest.mark.parametrize("mode", ["fail", "slow"])
def test_run_pass__signer_failing_mid_run__stops_attesting_and_says_why(  # D14
    system: Client, open_position, make_engine, mode: str
) -> None:
    open_position(size=10)
    flaky = FlakySigner(DEV_KEYS[1])
    engine = make_engine(signers=[LocalSigner(DEV_KEYS[0]), flaky], signer_timeout_s=0.3)
    assert once(engine, ticks()).outcomes[0].state == State.CONFIRMED
    flaky.mode = mode
    with pytest.raises(EngineHalted, match="signer"):
        once(engine, ticks({"ETH": 3_300.0, "BTC": 60_000.0, "SOL": 150.0}))
    assert len(batches_on_chain(system)) == 1
    assert engine.metrics.attesting._value.get() == 0
    # The batch it could not sign is closed, never signed late (one payload per sequence).
    last = engine.outbox.rows()[-1]
    assert last.state == State.FAILED
    assert last.signatures is None
    # While the signer stays down, later passes attest nothing either.
    report = engine.step(engine.prices())
    assert report.rows == []
    assert report.halted
    assert "signer" in report.halted


def test_run_pass__engine_key_rotated_out__keeps_attesting_with_the_rest_until_below_k(  # B09
    system: Client, open_position, make_engine
) -> None:
    open_position(size=10)
    engine = make_engine()
    assert once(engine, ticks()).outcomes[0].state == State.CONFIRMED
    owner, verifier = system.d.owner, engine.verifier
    retired = [LocalSigner(k).address for k in DEV_KEYS[:2]]
    replacement = Account.create().address
    system.chain.send(verifier.functions.rotateSigner(retired[0], replacement), owner, "rotate")
    # The new key epoch voids the old attestation; the two remaining keys sign the next one.
    report = once(engine, ticks())
    assert [o.state for o in report.outcomes] == [State.CONFIRMED]
    assert engine.guards.quorum is not None
    assert retired[0] not in engine.guards.quorum.addresses
    system.chain.send(verifier.functions.removeSigner(retired[1]), owner, "remove")
    with pytest.raises(EngineHalted, match="keys: 1 usable engine key"):
        once(engine, ticks({"ETH": 3_300.0, "BTC": 60_000.0, "SOL": 150.0}))
    assert len(batches_on_chain(system)) == 2


def test_metrics__served_over_http__expose_latency_and_outcomes(
    system: Client, open_position, make_engine
) -> None:
    open_position(size=10)
    engine = make_engine()
    once(engine, ticks())
    port = free_port()
    engine.metrics.serve(port)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'marginsync_attestations_total{outcome="applied"} 2.0' in body
    assert 'marginsync_batches_total{state="confirmed"} 1.0' in body
    assert "marginsync_tick_to_chain_seconds_count 1.0" in body
    assert "marginsync_attesting 1.0" in body


def test_start__signer_down_at_start__refuses_to_start(system: Client, make_engine) -> None:
    flaky = FlakySigner(DEV_KEYS[1])
    flaky.mode = "fail"
    with pytest.raises(SignerUnavailable, match="HSM unreachable"):
        make_engine(signers=[LocalSigner(DEV_KEYS[0]), flaky]).start()


# ---------------------------------------------------------------------------- the service
def test_run__streaming_price_moves__each_move_attested_and_progress_printed(
    system: Client, open_position, make_engine
) -> None:
    opened = open_position(size=10)
    engine = make_engine(interval_s=0.05, threshold_bps=500.0)
    lines: list[str] = []
    engine.progress = lines.append

    async def feed() -> Any:
        for step in range(3):  # +2% each step: beyond the 1% band, so each needs a new batch
            prices = {"ETH": 3_000.0 * 1.02**step, "BTC": 60_000.0, "SOL": 150.0}
            for tick in ticks(prices):
                yield tick
            await asyncio.sleep(0.5)

    async def main() -> None:
        stop = asyncio.Event()
        service = asyncio.create_task(engine.run(feed(), stop=stop))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = engine.outbox.rows((State.CONFIRMED,))
            if done and eth_price_e18(engine, done[-1].sequence) == 3_121_200 * 10**15:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await service

    asyncio.run(main())
    confirmed = engine.outbox.rows((State.CONFIRMED,))
    # One batch per move (the first attests both sides of the trade at 3,000).
    assert [eth_price_e18(engine, r.sequence) // 10**15 for r in confirmed] == [
        3_000_000,
        3_060_000,
        3_121_200,
    ]
    applied = engine.verifier.functions.appliedEntry(opened.trader).call()
    assert applied[0] == confirmed[-1].sequence
    assert engine.outbox.open_rows() == []
    assert any(line.startswith(f"batch #{confirmed[-1].sequence}:") for line in lines)
    # The mirror rebuilt the applied entry, its batch's prices and key epoch from events alone.
    mirrored = engine.mirror.attestations.entries[opened.trader]
    assert (mirrored.sequence, mirrored.im_micro_usd, mirrored.mm_micro_usd) == (
        applied[0],
        applied[2],
        applied[3],
    )
    record = engine.mirror.attestations.ring[applied[0] % RING_SIZE]
    assert record.sequence == applied[0]
    assert record.prices_e18[0] == 3_121_200 * 10**15
    assert record.key_epoch == engine.verifier.functions.keyEpoch().call()


# ---------------------------------------------------------------------------- funding
def test_once__funding_owed__out_of_equity_and_provisioned_in_initial_margin(
    system: Client, make_engine, open_position, others: list[str]
) -> None:
    """I26: the engine counts the funding an account owes as the contract does (out of equity,
    before anyone settles it), and adds what it can owe before its attestation expires to IM."""
    payer = open_position(size=10, collateral_usd=50_000)
    for who in others[:2]:
        system.deposit(who, "USDC", 1_000_000, mint=True)
    oracle = system.price_e18("ETH")
    system.trade("ETH-PERP", others[0], others[1], 10**18, oracle * 10_200 // 10_000)
    w3 = system.chain.w3
    for hours in (2, 8):
        w3.provider.make_request("evm_increaseTime", [hours * 3_600])  # type: ignore[arg-type]
        for feed in system.feeds.values():
            answer = feed.functions.latestRoundData().call()[1]
            system.chain.send(feed.functions.setAnswer(answer), system.d.owner, "republish")
        if hours == 2:  # anyone's settlement makes the held premium the rate in force
            system.chain.send(system.fn("settleFunding", others[0], 0), others[0], "poke")
    now = int(w3.eth.get_block("latest")["timestamp"])
    engine = make_engine(clock=lambda: float(now))
    once(engine, ticks(ts=float(now)))
    book = engine.book
    i = book.index[payer.trader.lower()]
    px = np.array([PRICES[s] for s in book.symbols])
    # The engine's pass may have mined blocks: compare at the block the contract is read at.
    block = w3.eth.get_block("latest")
    owed, provision = book.funding_usd(px, int(block["timestamp"]), 300.0)
    cash = system.account(payer.trader)["cash_wad"]
    equity = system.ch.functions.accountHealth(payer.trader).call(block_identifier=block["number"])[
        0
    ]
    exact_owed = cash + 10 * oracle - equity
    assert exact_owed > 0
    assert owed[i] == pytest.approx(exact_owed / 1e18, rel=1e-9)
    # Paying 2% per 8 h on 30,000 USD: 300 s of it, and the rate cannot rise past the cap.
    assert provision[i] == pytest.approx(30_000 * 0.02 * 300 / 28_800, rel=1e-6)
    maker = book.index[payer.maker.lower()]
    assert provision[maker] == 0.0  # a receiver at the cap cannot be made to pay within 300 s
