"""End to end on a real chain: oracle feeds move → the engine attests → liquidation follows the
attested requirement, in both directions.

1. A crash: the engine's volatility margin jumps above static, so an account that static margin
   (checked with the exact Python mirror, `offchain.risk.health`) still calls healthy becomes
   liquidatable on-chain, and a keeper liquidates it.
2. A hedge: long ETH-PERP / short BTC-PERP, strongly correlated. The engine's portfolio margin
   sees the offset, so after a move that would liquidate the account under static margin its
   attested MM (clamped by the verifier to ≥ 50% of static) keeps it healthy: nobody can
   liquidate it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offchain.chain.client import Client, wad
from offchain.chain.deploy import dev_engine_keys
from offchain.chain.mirror import AccountMirror
from offchain.feeds import ChainlinkPoller
from offchain.keeper import Keeper
from offchain.risk import MarketConfig, RiskConfig, ScenarioMarginConfig
from offchain.sync import (
    Engine,
    EngineConfig,
    LocalSigner,
    State,
    dev_submitter_key,
    source_sanitizer_config,
)

DEV_KEYS = [bytes.fromhex(k[2:]) for k in dev_engine_keys(3)]
# Perps margined by scenarios of ±5% with a 0.9 ETH/BTC correlation credit for opposite legs.
HEDGE_AWARE = RiskConfig(
    markets=tuple(MarketConfig(underlying=s, model="portfolio") for s in ("ETH", "BTC", "SOL")),
    scenario=ScenarioMarginConfig(
        spot_step=0.0125,
        spot_steps_each_side=4,
        tail_spot_multipliers=(),
        perp_contingency_rate=0.005,
        correlations={"BTC/ETH": 0.9},
        floor_fraction=0.1,
    ),
)


@pytest.fixture
def engine_for(system: Client, tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    made: list[Engine] = []

    def _make(risk_config: RiskConfig | None = None) -> Engine:
        engine = Engine(
            system.chain,
            system.d,
            signers=[LocalSigner(k) for k in DEV_KEYS],
            submitter_key=dev_submitter_key(),
            outbox_path=tmp_path / f"outbox-{len(made)}.sqlite",
            config=EngineConfig(),
            risk_config=risk_config,
            sanitizer_config=source_sanitizer_config("chain"),
            # Other tests on this worker's chain move its clock (warps, then snapshot reverts):
            # these tests are about margin, not skew (C15 has its own), so the engine keeps the
            # chain's time.
            clock=lambda: float(system.chain.w3.eth.get_block("pending")["timestamp"]),
        )
        made.append(engine)
        return engine

    yield _make
    for engine in made:
        engine.close()


def poll_and_step(engine: Engine, system: Client) -> Any:
    """One poll of the deployed aggregators (the `--source chain` path), then one pass."""
    feeds = {a.symbol: a.feed for a in system.d.assets}
    poller = ChainlinkPoller(system.chain.w3, feeds, interval_s=0, max_polls=1)
    return asyncio.run(engine.once(poller.__aiter__()))


def set_prices(system: Client, **prices: float) -> None:
    # Chainlink ticks are stamped with the round's updatedAt (whole seconds): a new round in the
    # same second as the previous one would look like a duplicate print to the sanitiser.
    time.sleep(1.05)
    for symbol, price in prices.items():
        system.set_price(symbol, price)


def static_health(system: Client, account: str) -> Any:
    mirror = AccountMirror(system.chain, system.d.clearinghouse, system.d.insurance_fund,
                           system.d.block)  # fmt: skip
    mirror.sync()
    prices = {a.id: system.price_e18(a.symbol) for a in system.d.assets}
    return mirror.health(account, prices)


def test_price_drop__engine_raises_requirement__liquidatable_only_under_attested_margin(
    system: Client, open_position, keeper: str, engine_for: Callable[..., Engine]
) -> None:
    opened = open_position(size=10, collateral_usd=5_000)  # 10 ETH at 3,000
    engine = engine_for()
    calm = poll_and_step(engine, system)
    assert [o.state for o in calm.outcomes] == [State.CONFIRMED]
    calm_mm = system.health(opened.trader).maintenance_margin_wad
    assert calm_mm < static_health(system, opened.trader).maintenance_margin_wad

    set_prices(system, ETH=2_700)  # −10% in one round: the fast EWMA volatility jumps
    crash = poll_and_step(engine, system)
    assert [o.state for o in crash.outcomes] == [State.CONFIRMED]

    static = static_health(system, opened.trader)
    on_chain = system.health(opened.trader)
    assert not static.liquidatable  # equity 2,000 ≥ static MM 1,755
    assert on_chain.equity_wad == static.equity_wad
    # The verifier caps the attested MM at 5× static: 8,775.
    assert on_chain.maintenance_margin_wad == 5 * static.maintenance_margin_wad
    assert on_chain.liquidatable

    preview = system.preview(opened.trader, "ETH-PERP")
    assert preview.status_name == "LIQUIDATABLE"
    receipt = system.liquidate(keeper, opened.trader, "ETH-PERP")
    (liq,) = [e for e in system.events(receipt) if e.name == "Liquidate"]
    assert liq.args["keeper"] == keeper
    assert abs(system.position(opened.trader, "ETH-PERP")) < opened.size_wad


def test_hedged_account__engine_margin_below_static__stays_healthy_where_static_liquidates(
    system: Client, trader: str, maker: str, keeper: str, engine_for: Callable[..., Engine]
) -> None:
    system.deposit(trader, "USDC", 6_100, mint=True)
    system.deposit(maker, "USDC", 10_000_000, mint=True)
    system.trade("ETH-PERP", trader, maker, wad(10), system.price_e18("ETH"))  # long $30k
    system.trade("BTC-PERP", trader, maker, -wad("0.5"), system.price_e18("BTC"))  # short $30k
    engine = engine_for(HEDGE_AWARE)
    assert [o.state for o in poll_and_step(engine, system).outcomes] == [State.CONFIRMED]

    # ETH −15%, BTC −5%: the hedge loses 3,000 of its 6,100.
    set_prices(system, ETH=2_550, BTC=57_000)
    assert [o.state for o in poll_and_step(engine, system).outcomes] == [State.CONFIRMED]

    static = static_health(system, trader)
    on_chain = system.health(trader)
    assert static.liquidatable  # equity 3,100 < static MM 3,510
    assert on_chain.equity_wad == static.equity_wad
    assert on_chain.maintenance_margin_wad < static.maintenance_margin_wad
    # The engine's MM (≈ 683) is below the verifier's floor, so the floor (50%) is in force.
    assert on_chain.maintenance_margin_wad == -(-static.maintenance_margin_wad // 2)
    assert not on_chain.liquidatable
    assert system.preview(trader, "ETH-PERP").status_name == "HEALTHY"
    assert Keeper(system, keeper).step() == []
    assert system.position(trader, "ETH-PERP") == wad(10)
