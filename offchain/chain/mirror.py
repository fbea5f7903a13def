"""The account mirror: every account's cash, balances, positions and nonce, rebuilt from the
clearinghouse's events alone (SPEC I17). The keeper and the engine read it instead of polling
accounts one by one; `tests/test_mirror.py` holds it equal to the contract's storage.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from offchain.chain.bindings import Chain, Event
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

    def state(self) -> AccountState:
        return AccountState(self.cash_wad, dict(self.balances), dict(self.positions))

    @property
    def has_positions(self) -> bool:
        return any(self.positions.values())


class AccountMirror:
    """Applies events in order; `sync` pulls new ones in bounded block ranges."""

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

    def sync(self, to_block: int | None = None, batch: int = 5_000) -> int:
        """Applies every event up to `to_block` (default: latest). Returns the events applied."""
        head = self.chain.w3.eth.block_number if to_block is None else to_block
        applied = 0
        while self.next_block <= head:
            end = min(head, self.next_block + batch - 1)
            for event in self.chain.get_events([self.clearinghouse], self.next_block, end):
                self.apply(event)
                applied += 1
            self.next_block = end + 1
        return applied

    def health(self, account: str, prices_e18: dict[int, int]) -> Health:
        return health(self.accounts[account].state(), self.collaterals, self.markets, prices_e18)

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
