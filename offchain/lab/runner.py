"""One generation, one scenario, on its own Anvil: deploy, open the population, replay the path.

Every generation gets the same path and the same population (both from the seed), a fresh chain
and the same clock: the opening block is mined at `CHAIN_START_S` and update k at
`CHAIN_START_S + t_k` (the scenario's time), so oracle heartbeats and attestation ages run on the
scenario's clock, and two runs with the same seed produce the same blocks, gas and events.

Per update: the three oracle feeds move (one block); in the funding scenarios a venue then trades
with the maker at the path's basis off the index, so a premium stands and funding accrues by the
contract's rules; Gen 3's engine (the product's, see `generations.Gen3Engine`) polls the feeds
and, on its turn, recomputes and attests; the keeper (on its cadence) liquidates; the shipped
backstop (`offchain.backstop`) takes what the insurance fund absorbed from its standing offer,
unwinds it with the market maker and books the fund's loss, and the keeper resolves
insolvencies; then every trader's equity (funding due counted), requirement in force and
notional are recorded from the event mirror (no per-account reads). At the end the lab checks its
off-chain view against the chain once: the Liquidate events counted afresh and every trader's
`accountHealth`, with funding due; then every open position settles its funding in one block, so
the `FundingSettled` events are the whole funding ledger (paid ≥ received, I26).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from offchain.backstop import Backstop, matcher_hedge
from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.chain.client import MAX_UINT
from offchain.chain.deploy import Roles, deploy_system
from offchain.errors import ConfigError
from offchain.lab.generations import Gen3Engine, Generation, SyncStats, risk_config
from offchain.lab.keeper import TRADE_GAS_LIMIT, LabKeeper, LabWire, Liquidation
from offchain.lab.ledger import Ledger
from offchain.lab.population import TraderPlan, maker_capital_usd
from offchain.lab.scenarios import LabPath
from offchain.lab.transport import Transport, Tx
from offchain.models import BPS, WAD, AttestationSpec, Deployment, SystemSpec
from offchain.risk.health import AccountState, CollateralParams, Health, health
from offchain.settings import Settings

FloatArray = NDArray[np.float64]
# A fixed chain clock (2033-05-18) after any wall-clock deployment time, so runs are identical.
CHAIN_START_S = 2_000_000_000
# Dev accounts by role: 0-3 owner, matcher, guardian, insurance fund (deploy.Roles); then these.
# (6 is unused: Gen 3's engine sends from its own submitter key, as `marginsync engine` does.)
# After the traders: the backstop, then the venue flow that prints off the index.
MAKER, KEEPER, FIRST_TRADER = 4, 5, 7
# The venue's clip per market and update, and its (ample) USDC.
VENUE_CLIP_USD = 10_000
VENUE_CAPITAL_USD = 1_000_000
# The backstop's capital, as a share of the maker's: enough to take a crash's absorbed book.
BACKSTOP_CAPITAL_SHARE = 0.2
MAX_TRADERS = 250
DEFAULT_CHAIN_ID = 31337
DEPOSIT_GAS_LIMIT = 300_000
ORACLE_GAS_LIMIT = 200_000


@dataclass(frozen=True)
class Insolvency:
    update: int
    account: str
    debt_wad: int
    covered_wad: int
    deficit_wad: int
    seized_value_wad: int  # market value of the collateral the fund took with the debt


@dataclass
class GenerationRun:
    """Everything one generation produced; `metrics.py` turns it into figures."""

    generation: Generation
    traders: list[str]
    interval_s: float
    times_s: list[float]  # scenario time of each point (0 = opening)
    symbols: dict[int, str]  # oracle asset id → symbol
    market_assets: dict[int, int]  # market id → oracle asset id
    prices_e18: list[dict[int, int]]  # oracle price per asset id at each point
    # Points × traders, USD, recorded after each update's actions (row 0: after opening).
    equity_usd: FloatArray
    im_usd: FloatArray
    mm_usd: FloatArray
    notional_usd: FloatArray
    hold_equity_usd: FloatArray  # the opening positions held untouched along the path
    market_equity_end_usd: FloatArray  # per trader at the end, collateral at full oracle value
    liquidations: list[Liquidation]
    insolvencies: list[Insolvency]
    gas: dict[str, list[int]]
    keeper_wall_ms: dict[int, float]  # update → price receipt to keeper round start
    sync: dict[int, SyncStats]  # update → Gen 3 engine step
    insurance_fund_start_wad: int
    insurance_fund_end_wad: int
    deficit_wad: int
    funding_paid_wad: int  # Σ positive FundingSettled amounts (every account, settled at the end)
    funding_received_wad: int  # −Σ negative ones
    onchain_liquidate_events: int
    onchain_deficit_wad: int
    health_mismatches: int
    setup_s: float
    wall_s: float
    notes: list[str] = field(default_factory=list)


def run_generation(
    generation: Generation,
    lab_path: LabPath,
    plans: list[TraderPlan],
    *,
    settings: Settings,
    on_progress: Callable[[str], None] = lambda _: None,
) -> GenerationRun:
    """Runs `generation` over `lab_path` with `plans` on a fresh embedded Anvil."""
    started = time.perf_counter()
    with lab_chain(generation, len(plans), settings=settings) as c:
        run = run_on(c, generation, lab_path, plans)
        try:
            on_progress("deployed")
            run.open(started)
            on_progress("positions opened")
            for k in range(1, lab_path.steps + 1):
                run.act(k, run.move(k))
                on_progress(f"update {k}/{lab_path.steps}: {len(run.liquidations)} liquidations")
            return run.finish(started)
        finally:
            run.close()


@dataclass(frozen=True)
class LabChain:
    """A fresh embedded Anvil with the system deployed, still mining every transaction."""

    url: str
    chain: Chain
    deployment: Deployment
    spec: SystemSpec


@contextmanager
def lab_chain(
    generation: Generation, traders: int, *, settings: Settings, chain_id: int = DEFAULT_CHAIN_ID
) -> Iterator[LabChain]:
    """Anvil with `chain_id` and accounts for every role and `traders` traders, the system
    deployed for `generation`; stopped on exit."""
    if traders > MAX_TRADERS:
        raise ConfigError(f"{traders} traders", f"the lab runs at most {MAX_TRADERS} traders")
    with Anvil(
        accounts=FIRST_TRADER + traders + 2, binary=settings.anvil_bin, chain_id=chain_id
    ) as node:
        chain = Chain.connect(settings, rpc_url=node.url)
        spec = SystemSpec(attestation=AttestationSpec() if generation.attested else None)
        yield LabChain(
            node.url, chain, deploy_system(chain, spec, Roles.from_accounts(chain.accounts)), spec
        )


def run_on(c: LabChain, generation: Generation, lab_path: LabPath, plans: list[TraderPlan]) -> Run:
    """A run on `c`, whose chain mines on demand from here on (at the scenario's clock)."""
    transport = Transport(c.url, c.chain)
    transport.manual_mining()
    return Run(generation, lab_path, plans, c.chain, c.deployment, transport, c.spec)


class Run:
    """One generation on one deployed chain: `open`, `move` and `act` per update, `finish`;
    `close` in any case. The venues lab (`offchain.lab.venues`) drives several in lockstep."""

    def __init__(
        self,
        generation: Generation,
        lab_path: LabPath,
        plans: list[TraderPlan],
        chain: Chain,
        deployment: Deployment,
        transport: Transport,
        spec: SystemSpec,
    ) -> None:
        self.g = generation
        self.path = lab_path
        self.plans = plans
        self.chain = chain
        self.d = deployment
        self.transport = transport
        self.spec = spec
        self.ledger = Ledger(chain, deployment, transport)
        self.maker = chain.accounts[MAKER]
        self.traders = chain.accounts[FIRST_TRADER : FIRST_TRADER + len(plans)]
        self.backstop_account = chain.accounts[FIRST_TRADER + len(plans)]
        self.venue = chain.accounts[FIRST_TRADER + len(plans) + 1]
        self.now_s = CHAIN_START_S
        self.gas: dict[str, list[int]] = defaultdict(list)
        self._ch = chain.contract("Clearinghouse", deployment.clearinghouse)
        self._feeds = {a.id: chain.contract("MockAggregator", a.feed) for a in deployment.assets}
        self._decimals = {a.id: a.feed_decimals for a in deployment.assets}
        self._asset_id = {a.symbol: a.id for a in deployment.assets}
        self.engine: Gen3Engine | None = None  # built once the chain runs on the lab's clock
        # What the run records, filled by `open`, `move` and `act`.
        self.points: list[dict[int, int]] = []
        self.rows: list[tuple[list[float], ...]] = []
        self.indices: list[dict[int, int]] = []
        self.held: list[AccountState] = []
        self.fund_start = 0
        self.setup_s = 0.0
        self.liquidations: list[Liquidation] = []
        self.keeper_wall_ms: dict[int, float] = {}
        self.sync: dict[int, SyncStats] = {}
        self.keeper = LabKeeper(
            chain=chain,
            deployment=deployment,
            ledger=self.ledger,
            transport=transport,
            address=chain.accounts[KEEPER],
            requirement=self.requirement,
            eth_asset=self._asset_id["ETH"],
        )
        self.backstop_wire = LabWire(transport, lambda: self.now_s)
        self.backstop = Backstop(
            chain,
            deployment,
            self.backstop_account,
            self.backstop_wire,
            hedge=matcher_hedge(chain, deployment, self.backstop_account, self.maker),
            accounts=lambda: list(self.ledger.mirror.accounts),
        )

    # ------------------------------------------------------------------ the requirement in force
    def requirement(
        self, account: str, static: Health, prices_e18: Mapping[int, int]
    ) -> tuple[int, int]:
        """(IM, MM) in wad that `Clearinghouse._healthAt` uses now: the attestor's answer
        (the link's certificate, the verifier's attestation, or static), from the mirror."""
        found = self.ledger.mirror.requirement_in_force(
            account,
            static.initial_margin_wad,
            static.maintenance_margin_wad,
            prices_e18,
            self.now_s,
        )
        return found.im_wad, found.mm_wad

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    # ------------------------------------------------------------------ the run
    def open(self, started: float) -> None:
        """Opens the population's positions and, under Gen 3, starts the engine."""
        path = self.path.path
        self.points = [self._prices_e18(k) for k in range(path.steps + 1)]
        self._open_positions(self.points[0])
        if self.g.attested:
            self.engine = Gen3Engine(
                self.chain,
                self.d,
                risk_config(
                    [a.symbol for a in sorted(self.d.assets, key=lambda a: a.id)],
                    self.path.interval_s,
                    self.path.warmup,
                ),
                clock=lambda: self.now_s,
                mine=lambda: self.transport.mine(self.now_s),
            )
        self.setup_s = time.perf_counter() - started
        self.rows = [self.snapshot(self.points[0])]
        # Each point's funding indices, so the held positions owe funding as the live ones do.
        self.indices = [self.ledger.mirror.funding_indices(self.points[0], self.now_s)]
        self.held = [self.ledger.mirror.accounts[a].state() for a in self.traders]
        self.fund_start = self.ledger.mirror.health(
            self.d.insurance_fund, self.points[0]
        ).equity_wad

    def move(self, k: int) -> float:
        """Update `k`'s market: the oracle moves, the venue prints, Gen 3's engine polls and (on
        its turn) attests. Returns the `perf_counter` time of the tick, which lags count from."""
        path = self.path.path
        self.now_s = CHAIN_START_S + round(float(path.ts_s[k] - path.ts_s[0]))
        self.ledger.tick = k
        prices = self.points[k]
        self._push_prices(prices, "oracle_update")
        self._venue_trades(k, prices)
        tick_at = time.perf_counter()
        if self.engine is not None:
            self.engine.poll()
            if self.g.engine_posts(k):
                self.sync[k] = stats = self.engine.step(since=tick_at)
                if stats.gas:
                    self.gas["engine_submit"].append(stats.gas)
        return tick_at

    def act(self, k: int, tick_at: float) -> None:
        """Update `k`'s actions: the keeper (on its cadence), the backstop, insolvencies; then
        every trader's row is recorded."""
        prices = self.points[k]
        if self.g.keeper_checks(k):
            self.keeper_wall_ms[k] = (time.perf_counter() - tick_at) * 1000.0
            done = self.keeper.round(prices, self.now_s)
            self.liquidations.extend(done)
            self.gas["liquidate"].extend(liq.gas_used for liq in done)
            self.backstop.round()
            self.ledger.pull()
            self.gas["backstop"].extend(self.backstop_wire.gas_used)
            self.backstop_wire.gas_used.clear()
            self.gas["backstop"].extend(
                self.keeper.resolve_insolvencies(prices, self.now_s, self.traders)
            )
        self.ledger.pull()
        self.rows.append(self.snapshot(prices))
        self.indices.append(self.ledger.mirror.funding_indices(prices, self.now_s))

    def finish(self, started: float) -> GenerationRun:
        """Checks the run against the chain, settles funding, and returns what it produced."""
        path = self.path.path
        points, rows, indices, held = self.points, self.rows, self.indices, self.held
        final = points[-1]
        mirror = self.ledger.mirror
        onchain_liquidations, onchain_deficit, mismatches = self._check_against_chain(final)
        # After the check (made with funding due): funding settled into cash from here on.
        self._settle_all_funding()
        funding_paid, funding_received = self.ledger.funding_flows_wad()
        equity, im, mm, notional = (np.array([r[i] for r in rows]) for i in range(4))
        hold = np.array(
            [
                [
                    health(s, mirror.collaterals, mirror.markets, p, None, i).equity_wad / WAD
                    for s in held
                ]
                for p, i in zip(points, indices, strict=True)
            ]
        )
        unhaircut = {
            asset: CollateralParams(c.oracle_asset, BPS, c.decimals)
            for asset, c in mirror.collaterals.items()
        }
        market_equity = np.array(
            [
                health(mirror.accounts[a].state(), unhaircut, mirror.markets, final).equity_wad
                / WAD
                for a in self.traders
            ]
        )
        return GenerationRun(
            generation=self.g,
            traders=list(self.traders),
            interval_s=self.path.interval_s,
            times_s=[float(t) for t in path.ts_s],
            symbols={a.id: a.symbol for a in self.d.assets},
            market_assets={m.id: m.oracle_asset for m in self.d.markets},
            prices_e18=points,
            equity_usd=equity,
            im_usd=im,
            mm_usd=mm,
            notional_usd=notional,
            hold_equity_usd=hold,
            market_equity_end_usd=market_equity,
            liquidations=self.liquidations,
            insolvencies=insolvencies(self.ledger),
            gas=dict(self.gas),
            keeper_wall_ms=self.keeper_wall_ms,
            sync=self.sync,
            insurance_fund_start_wad=self.fund_start,
            insurance_fund_end_wad=mirror.health(self.d.insurance_fund, final).equity_wad,
            deficit_wad=mirror.deficit_wad,
            funding_paid_wad=funding_paid,
            funding_received_wad=funding_received,
            onchain_liquidate_events=onchain_liquidations,
            onchain_deficit_wad=onchain_deficit,
            health_mismatches=mismatches,
            setup_s=self.setup_s,
            wall_s=time.perf_counter() - started,
        )

    # ------------------------------------------------------------------ steps
    def _prices_e18(self, k: int) -> dict[int, int]:
        """The path's prices as the oracle router will report them: rounded to the feed's
        decimals, then scaled to 1e18, exactly."""
        out = {}
        for symbol, series in self.path.path.prices_usd.items():
            asset = self._asset_id[symbol]
            answer = round(float(series[k]) * 10 ** self._decimals[asset])
            out[asset] = answer * 10 ** (18 - self._decimals[asset])
        return out

    def _push_prices(self, prices_e18: Mapping[int, int], gas_key: str) -> None:
        txs = [
            Tx(
                self.d.owner,
                feed.address,
                self.transport.codec.encode(
                    "MockAggregator",
                    "setAnswer",
                    prices_e18[asset] // 10 ** (18 - self._decimals[asset]),
                ),
                ORACLE_GAS_LIMIT,
                f"set price of asset {asset}",
            )
            for asset, feed in sorted(self._feeds.items())
        ]
        receipts = self.transport.send_all(txs, timestamp_s=self.now_s)
        self.gas[gas_key].extend(r.gas_used for r in receipts)

    def _open_positions(self, prices: dict[int, int]) -> None:
        """Deposits for everyone, then every trader's legs against the maker at the oracle price,
        all before the first update and identical in every generation."""
        self._push_prices(prices, "setup_oracle")
        owner, ch, enc = self.d.owner, self._ch, self.transport.codec.encode
        eth_usd = prices[self._asset_id["ETH"]] / WAD
        maker_usd = maker_capital_usd(self.plans)
        amounts: list[tuple[str, str, int]] = [
            (self.maker, "USDC", round(maker_usd * 1e6)),
            (self.backstop_account, "USDC", round(maker_usd * BACKSTOP_CAPITAL_SHARE * 1e6)),
            (self.venue, "USDC", VENUE_CAPITAL_USD * 10**6),
        ]
        for trader, plan in zip(self.traders, self.plans, strict=True):
            if plan.collateral == "USDC":
                amounts.append((trader, "USDC", round(plan.collateral_usd * 1e6)))
            else:
                weth = round(plan.collateral_usd / eth_usd, 6)
                amounts.append((trader, "WETH", round(weth * 1e6) * 10**12))
        txs: list[Tx] = []
        for symbol in ("USDC", "WETH"):
            total = sum(a for _, s, a in amounts if s == symbol)
            token = self.chain.contract("MockERC20", self.d.collateral(symbol).token)
            txs.append(
                Tx(
                    owner,
                    token.address,
                    enc("MockERC20", "mint", owner, total),
                    DEPOSIT_GAS_LIMIT,
                    f"mint {symbol}",
                )
            )
            txs.append(
                Tx(
                    owner,
                    token.address,
                    enc("MockERC20", "approve", ch.address, MAX_UINT),
                    DEPOSIT_GAS_LIMIT,
                    f"approve {symbol}",
                )
            )
        # A trader with nothing on this chain (the venues lab) deposits nothing here.
        for account, symbol, amount in (a for a in amounts if a[2]):
            asset = self.d.collateral(symbol).id
            txs.append(
                Tx(
                    owner,
                    ch.address,
                    enc("Clearinghouse", "deposit", account, asset, amount),
                    DEPOSIT_GAS_LIMIT,
                    f"deposit {symbol} for {account[:10]}",
                )
            )
        self.transport.send_all(txs, timestamp_s=self.now_s)
        self.ledger.pull()

        mirror = self.ledger.mirror
        trades: list[Tx] = []
        for trader, plan in zip(self.traders, self.plans, strict=True):
            # Leverage on the collateral's counted (haircut) value, sized in whole base wei.
            equity_wad = mirror.health(trader, prices).equity_wad
            for leg in plan.legs:
                market = self.d.market(leg.market)
                price = prices[market.oracle_asset]
                notional_wad = equity_wad * round(leg.leverage * 10_000) // 10_000
                size = leg.side * (notional_wad * WAD // price)
                data = enc(
                    "Clearinghouse", "settleTrade", market.id, trader, self.maker, size, price
                )
                trades.append(
                    Tx(
                        self.d.matcher,
                        ch.address,
                        data,
                        TRADE_GAS_LIMIT,
                        f"open {plan.name} on {leg.market}",
                    )
                )
        receipts = self.transport.send_all(trades, timestamp_s=self.now_s)
        self.gas["settle_trade"].extend(r.gas_used for r in receipts)
        self.ledger.pull()

    def _venue_trades(self, k: int, prices: dict[int, int]) -> None:
        """The venue's prints at update `k`: one clip per market with the maker at the path's
        basis off the index (inside the price band), buying on odd updates and selling on even
        ones so its position stays within a clip. Each trade accrues the market's funding and
        sets the held premium (IFunding). None where the basis is zero."""
        basis_bps = self.path.basis_bps[k]
        if basis_bps == 0:
            return
        side = 1 if k % 2 else -1
        enc = self.transport.codec.encode
        txs: list[Tx] = []
        for market in self.d.markets:
            index = prices[market.oracle_asset]
            size = side * (VENUE_CLIP_USD * WAD * WAD // index)
            price = index * (BPS + basis_bps) // BPS
            data = enc(
                "Clearinghouse", "settleTrade", market.id, self.venue, self.maker, size, price
            )
            txs.append(Tx(self.d.matcher, self._ch.address, data, TRADE_GAS_LIMIT, "venue print"))
        receipts = self.transport.send_all(txs, timestamp_s=self.now_s)
        self.gas["venue_trade"].extend(r.gas_used for r in receipts)
        self.ledger.pull()

    def _settle_all_funding(self) -> None:
        """`settleFunding` for every open position, all in one block (so at one index)."""
        enc = self.transport.codec.encode
        txs = [
            Tx(
                self.chain.accounts[KEEPER],
                self._ch.address,
                enc("Clearinghouse", "settleFunding", account, market_id),
                TRADE_GAS_LIMIT,
                f"settle funding of {account[:10]} on market {market_id}",
            )
            for account, state in self.ledger.mirror.accounts.items()
            for market_id, size in sorted(state.positions.items())
            if size
        ]
        if txs:
            receipts = self.transport.send_all(txs, timestamp_s=self.now_s)
            self.gas["settle_funding"].extend(r.gas_used for r in receipts)
            self.ledger.pull()

    def snapshot(self, prices: dict[int, int]) -> tuple[list[float], ...]:
        """(equity, IM in force, MM in force, notional) of every trader, USD."""
        mirror = self.ledger.mirror
        markets = {m.id: m.oracle_asset for m in self.d.markets}
        equity, im, mm, notional = [], [], [], []
        for account in self.traders:
            static = mirror.health(account, prices, now=self.now_s)
            req_im, req_mm = self.requirement(account, static, prices)
            gross = sum(
                abs(size) * prices[markets[m]]
                for m, size in mirror.accounts[account].positions.items()
                if size
            )
            equity.append(static.equity_wad / WAD)
            im.append(req_im / WAD)
            mm.append(req_mm / WAD)
            notional.append(gross / WAD**2)
        return equity, im, mm, notional

    def _check_against_chain(self, prices: dict[int, int]) -> tuple[int, int, int]:
        """(Liquidate events counted afresh, deficitWad, traders whose on-chain health differs
        from the lab's view)."""
        head = self.transport.block_number()
        events = self.transport.events([self.d.clearinghouse], self.d.block, head)
        liquidations = sum(1 for e in events if e.name == "Liquidate")
        ch, codec = self._ch.address, self.transport.codec
        raw = self.transport.call_all(
            [(ch, codec.encode("Clearinghouse", "accountHealth", a)) for a in self.traders]
            + [(ch, codec.encode("Clearinghouse", "deficitWad"))]
        )
        mismatches = 0
        for account, data in zip(self.traders, raw[:-1], strict=True):
            values = codec.decode("Clearinghouse", "accountHealth", data)[0]
            onchain = tuple(int(v) for v in values)
            static = self.ledger.mirror.health(account, prices, now=self.now_s)
            expected = (static.equity_wad, *self.requirement(account, static, prices))
            mismatches += onchain != expected
        deficit = int(codec.decode("Clearinghouse", "deficitWad", raw[-1])[0])
        return liquidations, deficit, mismatches


def insolvencies(ledger: Ledger) -> list[Insolvency]:
    """Every `InsolvencyResolved`, with the market value of the collateral the fund seized
    in the same transaction (`CollateralSeized.valueWad`, unhaircut)."""
    seized: dict[tuple[str, str], int] = defaultdict(int)
    for _, e in ledger.named("CollateralSeized"):
        seized[(e.tx_hash, str(e.args["account"]))] += int(e.args["valueWad"])
    return [
        Insolvency(
            update=tick,
            account=str(e.args["account"]),
            debt_wad=int(e.args["debtWad"]),
            covered_wad=int(e.args["coveredWad"]),
            deficit_wad=int(e.args["deficitWad"]),
            seized_value_wad=seized[(e.tx_hash, str(e.args["account"]))],
        )
        for tick, e in ledger.named("InsolvencyResolved")
    ]
