"""The account mirror: every account's cash, balances, positions and nonce, rebuilt from the
clearinghouse's events alone (SPEC I17). The keeper and the engine read it instead of polling
accounts one by one; `tests/test_mirror.py` holds it equal to the contract's storage.

Reorganisations: `sync` remembers the hash of the head it synced to, and before reading on it
checks the last one still stands. If it does not, it walks back to the newest head that does,
restores the newest checkpoint at or below it (a copy of the state taken every
`CHECKPOINT_BLOCKS`) and replays the events it kept since, then reads forward again; a log the
node marks `removed` makes it read the range again. Deeper than its checkpoints it starts over
from the deployment block. Subclasses (the keeper's, the engine's) add what they mirror to
`_STATE` and read their logs through `_fetch` / `_apply_item`.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from web3.types import RPCEndpoint

from offchain.chain.bindings import Chain, ChainReorganised, Event
from offchain.risk.funding import FundingMarket
from offchain.risk.health import (
    AccountState,
    CollateralParams,
    Health,
    MarketParams,
    health,
    trade_cash_change_wad,
)


@dataclass
class MirroredAccount:
    cash_wad: int = 0
    nonce: int = 0
    balances: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    positions: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    funding_index: dict[int, int] = field(default_factory=dict)

    def state(self) -> AccountState:
        return AccountState(
            self.cash_wad, dict(self.balances), dict(self.positions), dict(self.funding_index)
        )

    @property
    def has_positions(self) -> bool:
        return any(self.positions.values())


CHECKPOINT_BLOCKS = 32  # a copy of the state every this many blocks
CHECKPOINTS = 3  # kept: a reorganisation up to ~64 blocks deep rewinds without starting over


class AccountMirror:
    """Applies events in order; `sync` pulls new ones in bounded block ranges."""

    _STATE: tuple[str, ...] = (
        "accounts",
        "collaterals",
        "markets",
        "deficit_wad",
        "_decimals",
        "_weights",
        "_oracle_assets",
        "_market_assets",
        "funding",
    )

    def __init__(
        self, chain: Chain, clearinghouse: str, insurance_fund: str, from_block: int
    ) -> None:
        self.chain = chain
        self.clearinghouse = clearinghouse
        self.insurance_fund = insurance_fund
        self.next_block = from_block
        self.accounts: dict[str, MirroredAccount] = defaultdict(MirroredAccount)
        self.collaterals: dict[int, CollateralParams] = {}
        self.markets: dict[int, MarketParams] = {}
        self.deficit_wad = 0
        self._decimals: dict[int, int] = {}
        self._weights: dict[int, int] = {}
        self._oracle_assets: dict[int, int] = {}
        self._market_assets: dict[int, int] = {}
        self.funding: dict[int, FundingMarket] = {}
        self.from_block = from_block
        self.rewinds = 0
        self._tips: list[tuple[int, str | None]] = []  # (head, its hash) of each sync
        self._checkpoints: list[tuple[int, dict[str, Any]]] = []
        self._recent: list[tuple[int, Any]] = []  # applied after the oldest checkpoint
        self._initial: dict[str, Any] | None = None

    def sync(self, to_block: int | None = None, batch: int = 5_000) -> int:
        """Applies every event up to `to_block` (default: latest), in chain order, after
        rewinding whatever a reorganisation took away. Returns the events applied."""
        if self._initial is None:
            self._initial = self._snapshot()
        self._rewind_if_reorganised()
        head = self.chain.w3.eth.block_number if to_block is None else to_block
        head_hash = self._block_hash(head)
        applied = 0
        while self.next_block <= head:
            end = min(head, self.next_block + batch - 1)
            try:
                items = self._fetch(self.next_block, end)
            except ChainReorganised:
                self._rewind_if_reorganised()
                continue
            for block, item in items:
                self._apply_item(item)
                self._recent.append((block, item))
            applied += len(items)
            self.next_block = end + 1
        self._remember(head, head_hash)
        return applied

    # ------------------------------------------------------------------ reading, per mirror
    def _fetch(self, start: int, end: int) -> list[tuple[int, Any]]:
        """(block, item) in chain order for blocks `start`..`end`."""
        return [(e.block, e) for e in self.chain.get_events([self.clearinghouse], start, end)]

    def _apply_item(self, item: Any) -> None:
        self.apply(item)

    def _rewound(self) -> None:
        """Called after a rewind, for subclasses that derive state from what they mirror."""

    # ------------------------------------------------------------------ reorganisations
    def _rewind_if_reorganised(self) -> None:
        if not self._tips or self._block_hash(self._tips[-1][0]) == self._tips[-1][1]:
            return
        standing = next((b for b, h in reversed(self._tips[:-1]) if self._block_hash(b) == h), None)
        self.rewinds += 1
        checkpoint = next(
            (c for c in reversed(self._checkpoints) if standing is not None and c[0] <= standing),
            None,
        )
        if standing is None or checkpoint is None:  # deeper than we can rewind: start over
            assert self._initial is not None
            self._restore(self._initial)
            self.next_block = self.from_block
            self._tips, self._checkpoints, self._recent = [], [], []
        else:
            at, state = checkpoint
            self._restore(state)
            self._tips = [t for t in self._tips if t[0] <= standing]
            self._checkpoints = [c for c in self._checkpoints if c[0] <= standing]
            self._recent = [r for r in self._recent if r[0] <= standing]
            for block, item in self._recent:
                if block > at:
                    self._apply_item(item)
            self.next_block = standing + 1
        self._rewound()

    def _remember(self, head: int, head_hash: str | None) -> None:
        self._tips = [t for t in self._tips if head - t[0] <= CHECKPOINTS * CHECKPOINT_BLOCKS]
        self._tips.append((head, head_hash))
        if not self._checkpoints or head - self._checkpoints[-1][0] >= CHECKPOINT_BLOCKS:
            self._checkpoints = [*self._checkpoints, (head, self._snapshot())][-CHECKPOINTS:]
            oldest = self._checkpoints[0][0]
            self._recent = [r for r in self._recent if r[0] > oldest]

    def _snapshot(self) -> dict[str, Any]:
        return copy.deepcopy({name: getattr(self, name) for name in self._STATE})

    def _restore(self, state: dict[str, Any]) -> None:
        for name, value in copy.deepcopy(state).items():
            setattr(self, name, value)

    def _block_hash(self, number: int) -> str | None:
        response = self.chain.w3.provider.make_request(
            RPCEndpoint("eth_getBlockByNumber"), [hex(number), False]
        )
        block = response.get("result")
        return None if not block else str(block["hash"])

    def health(
        self,
        account: str,
        prices_e18: dict[int, int],
        high_e18: dict[int, int] | None = None,
        now: int | None = None,
    ) -> Health:
        """`risk.health` of the mirrored account (`high_e18`: broken feeds' high quotes), with
        the funding its positions owe at block time `now` (default: as of the last accrual)."""
        return health(
            self.accounts[account].state(),
            self.collaterals,
            self.markets,
            prices_e18,
            high_e18,
            self.funding_indices(prices_e18, now),
        )

    def market_asset_mask(self, account: str) -> int:
        """The oracle assets of the account's open positions, as a bit mask: the prices the
        verifier's S1 check is asked at (`_marketPrices`), one bit per asset."""
        mask = 0
        for market_id, size in self.accounts[account].positions.items():
            if size:
                mask |= 1 << self._market_assets[market_id]
        return mask

    def funding_indices(self, prices_e18: dict[int, int], now: int | None = None) -> dict[int, int]:
        """Each market's funding index at block time `now` and its (low) price, as health sees."""
        return {
            m: f.index_at(f.last_accrual if now is None else now, prices_e18[asset])
            for m, f in self.funding.items()
            if (asset := self._market_assets.get(m)) is not None and asset in prices_e18
        }

    def apply(self, e: Event) -> None:
        a = e.args
        handler = getattr(self, f"_on_{e.name}", None)
        if handler is not None:
            handler(a)

    # ------------------------------------------------------------------ configuration
    def _on_CollateralListed(self, a: dict[str, int]) -> None:
        self._decimals[a["assetId"]] = a["decimals"]
        self._oracle_assets[a["assetId"]] = a["oracleAsset"]

    def _on_CollateralConfigured(self, a: dict[str, int]) -> None:
        asset = a["assetId"]
        self.collaterals[asset] = CollateralParams(
            self._oracle_assets[asset], a["weightBps"], self._decimals[asset]
        )

    def _on_MarketListed(self, a: dict[str, int]) -> None:
        self._market_assets[a["marketId"]] = a["oracleAsset"]

    def _on_MarketConfigured(self, a: dict[str, int]) -> None:
        market = a["marketId"]
        self.markets[market] = MarketParams(self._market_assets[market], a["imBps"], a["mmBps"])

    # ------------------------------------------------------------------ funding (IFunding)
    def _on_FundingConfigured(self, a: dict[str, int]) -> None:
        f = self.funding.get(a["marketId"], FundingMarket())
        self.funding[a["marketId"]] = replace(
            f, max_rate_bps=a["maxRateBps"], premium_window_s=a["premiumWindowS"]
        )

    def _on_FundingAccrued(self, a: dict[str, int]) -> None:
        f = self.funding.get(a["marketId"], FundingMarket())
        self.funding[a["marketId"]] = replace(
            f,
            index_wad=a["indexWad"],
            rate_e18=a["rateE18"],
            premium_ema_e18=a["premiumEmaE18"],
            last_accrual=a["accruedAt"],
        )

    def _on_PremiumSampled(self, a: dict[str, int]) -> None:
        f = self.funding[a["marketId"]]
        self.funding[a["marketId"]] = replace(f, last_premium_e18=a["premiumE18"])

    def _on_FundingSettled(self, a: dict[str, int]) -> None:
        acct = self.accounts[str(a["account"])]
        acct.cash_wad -= a["amountWad"]
        # Settled to the market's index as it stands: the same transaction's `FundingAccrued`
        # (or, in the block of an earlier accrual, that one's), already applied.
        market = self.funding.get(a["marketId"], FundingMarket())
        acct.funding_index[a["marketId"]] = market.index_wad

    def _settled_to_index(self, market: int, *accounts: MirroredAccount) -> None:
        """After a position change each side stands at the market's index, settled or not (a
        position opened from zero settles nothing and emits no `FundingSettled`)."""
        f = self.funding.get(market)
        for acct in accounts:
            acct.funding_index[market] = 0 if f is None else f.index_wad

    # ------------------------------------------------------------------ balances
    def _quote_scale(self) -> int:
        return int(10 ** (18 - self._decimals[0]))

    def _on_Deposit(self, a: dict[str, int]) -> None:
        acct = self.accounts[str(a["account"])]
        if a["assetId"] == 0:
            acct.cash_wad += a["credited"] * self._quote_scale()
        else:
            acct.balances[a["assetId"]] += a["credited"]

    def _on_Withdraw(self, a: dict[str, int]) -> None:
        acct = self.accounts[str(a["account"])]
        if a["assetId"] == 0:
            acct.cash_wad -= a["amount"] * self._quote_scale()
        else:
            acct.balances[a["assetId"]] -= a["amount"]

    def _on_TradeSettled(self, a: dict[str, int]) -> None:
        market, delta, price = a["marketId"], a["takerSizeDelta"], a["priceE18"]
        taker, maker = self.accounts[str(a["taker"])], self.accounts[str(a["maker"])]
        taker.cash_wad += trade_cash_change_wad(delta, price)
        maker.cash_wad += trade_cash_change_wad(-delta, price)
        taker.positions[market] = a["takerSizeAfter"]
        maker.positions[market] = a["makerSizeAfter"]
        taker.nonce, maker.nonce = a["takerNonce"], a["makerNonce"]
        self._settled_to_index(market, taker, maker)

    def _on_Liquidate(self, a: dict[str, int]) -> None:
        market, delta, price = a["marketId"], a["sizeDelta"], a["priceE18"]
        penalty, reward = a["penaltyWad"], a["keeperRewardWad"]
        acct, fund = self.accounts[str(a["account"])], self.accounts[self.insurance_fund]
        acct.cash_wad += trade_cash_change_wad(delta, price) - penalty
        acct.positions[market] = a["sizeAfter"]
        acct.nonce = a["accountNonce"]
        fund.cash_wad += trade_cash_change_wad(-delta, price) + penalty - reward
        fund.positions[market] -= delta
        fund.nonce = a["backstopNonce"]
        self._settled_to_index(market, acct, fund)
        self.accounts[str(a["keeper"])].cash_wad += reward

    def _on_CollateralSeized(self, a: dict[str, int]) -> None:
        self.accounts[str(a["account"])].balances[a["assetId"]] -= a["amount"]
        self.accounts[self.insurance_fund].balances[a["assetId"]] += a["amount"]

    def _on_InsolvencyResolved(self, a: dict[str, int]) -> None:
        self.accounts[str(a["account"])].cash_wad += a["debtWad"]
        self.accounts[self.insurance_fund].cash_wad -= a["debtWad"]
        self.deficit_wad += a["deficitWad"]

    def _on_DeficitBooked(self, a: dict[str, int]) -> None:
        self.deficit_wad = a["deficitWad"]
