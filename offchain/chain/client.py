"""A typed client for one deployed marginsync system: what the CLI, keeper, demo and tests call.

Amounts cross this door in human units (tokens, USD, base units as floats or exact ints) and are
converted once, here. Every write is pre-flighted by `Chain.send`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from web3.contract import Contract
from web3.types import TxReceipt

from offchain.chain.bindings import Chain, Event, checksum
from offchain.errors import ConfigError, DeploymentStale
from offchain.models import Deployment, to_units
from offchain.risk.health import Health
from offchain.settings import Settings

MAX_UINT = 2**256 - 1


@dataclass(frozen=True)
class Preview:
    status: int
    full: bool
    close_size: int
    price_e18: int
    penalty_wad: int
    keeper_reward_wad: int
    equity_wad: int
    maintenance_margin_wad: int

    STATUS = (
        "LIQUIDATABLE",
        "HEALTHY",
        "NO_POSITION",
        "UNKNOWN_MARKET",
        "PRICE_UNAVAILABLE",
        "SEQUENCER_DOWN",
        "BACKSTOP",
    )

    @property
    def liquidatable(self) -> bool:
        return self.status == 0

    @property
    def status_name(self) -> str:
        return self.STATUS[self.status]

    @property
    def takes_all_equity(self) -> bool:
        """The penalty is all the equity the account has left (SPEC I24; realising the close at
        the oracle price costs it at most two wei of rounding), so the reward is not the rate's
        share: closing the account is a bad-debt duty, not a paying trade."""
        return self.equity_wad - self.penalty_wad <= 2


def wad(amount: float | int | str | Decimal) -> int:
    """Human USD amount or base size (signed) in 18-decimal integer units, exactly."""
    return (
        to_units(amount, 18) if Decimal(str(amount)) >= 0 else -to_units(-Decimal(str(amount)), 18)
    )


def units(amount: float | int | str | Decimal, decimals: int) -> int:
    if Decimal(str(amount)) < 0:
        raise ConfigError(f"amount {amount} is negative", "give a positive amount")
    return to_units(amount, decimals)


def connect(settings: Settings) -> tuple[Chain, Deployment]:
    """The chain and its recorded deployment, checked to be there."""
    chain = Chain.connect(settings)
    d = Deployment.load(settings.deployments_dir, chain.chain_id)
    # A restarted local node keeps its chain id, so the registry still loads; its addresses
    # then hold nothing and every call would fail with a confusing decode error.
    if not chain.w3.eth.get_code(checksum(d.clearinghouse)):
        path = Deployment.path(settings.deployments_dir, chain.chain_id)
        raise DeploymentStale(chain.chain_id, str(path), d.clearinghouse)
    return chain, d


class Client:
    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        self.chain = chain
        self.d = deployment
        self.ch: Contract = chain.contract("Clearinghouse", deployment.clearinghouse)
        self.router: Contract = chain.contract("OracleRouter", deployment.oracle_router)
        self.tokens: dict[str, Contract] = {
            c.symbol: chain.contract("MockERC20", c.token) for c in deployment.collaterals
        }
        self.feeds: dict[str, Contract] = {
            a.symbol: chain.contract("MockAggregator", a.feed) for a in deployment.assets
        }

    # ------------------------------------------------------------------ collateral
    def mint(self, to: str, symbol: str, amount: float | int | str) -> None:
        c = self.d.collateral(symbol)
        self.chain.send(
            self.tokens[c.symbol].functions.mint(checksum(to), units(amount, c.decimals)),
            self.d.owner,
            f"mint {amount} {c.symbol}",
        )

    def deposit(
        self, account: str, symbol: str, amount: float | int | str, *, mint: bool = False
    ) -> int:
        """Deposits from `account`'s wallet (minting the mock token first if `mint`). Returns the
        amount credited, read from the `Deposit` event."""
        c = self.d.collateral(symbol)
        raw = units(amount, c.decimals)
        if raw == 0:
            raise ConfigError(f"deposit amount {amount} rounds to zero", "deposit more")
        token = self.tokens[c.symbol]
        if mint:
            self.mint(account, symbol, amount)
        self.chain.send(
            token.functions.approve(self.ch.address, raw), account, f"approve {c.symbol}"
        )
        receipt = self.chain.send(
            self.ch.functions.deposit(checksum(account), c.id, raw),
            account,
            f"deposit {amount} {c.symbol}",
        )
        return int(self._event(receipt, "Deposit").args["credited"])

    def withdraw(
        self, account: str, symbol: str, amount: float | int | str, to: str | None = None
    ) -> TxReceipt:
        c = self.d.collateral(symbol)
        return self.chain.send(
            self.ch.functions.withdraw(c.id, units(amount, c.decimals), checksum(to or account)),
            account,
            f"withdraw {amount} {c.symbol}",
        )

    # ------------------------------------------------------------------ trading
    def trade(
        self,
        market: str | int,
        taker: str,
        maker: str,
        taker_size_delta_wad: int,
        price_e18: int,
        *,
        matcher: str | None = None,
    ) -> TxReceipt:
        m = self.d.market(market)
        return self.chain.send(
            self.ch.functions.settleTrade(
                m.id, checksum(taker), checksum(maker), taker_size_delta_wad, price_e18
            ),
            matcher or self.d.matcher,
            f"settle trade on {m.symbol}",
        )

    def liquidate(
        self, keeper: str, account: str, market: str | int, max_close: int = MAX_UINT
    ) -> TxReceipt:
        m = self.d.market(market)
        return self.chain.send(
            self.ch.functions.liquidate(checksum(account), m.id, max_close),
            keeper,
            f"liquidate {account[:10]} on {m.symbol}",
        )

    # ------------------------------------------------------------------ oracle
    def set_price(self, symbol: str, price_usd: float | int | str) -> TxReceipt:
        a = self.d.asset(symbol)
        answer = int(Decimal(str(price_usd)) * (Decimal(10) ** a.feed_decimals))
        return self.chain.send(
            self.feeds[a.symbol].functions.setAnswer(answer), self.d.owner, f"set {a.symbol} price"
        )

    def price_e18(self, symbol: str) -> int:
        return int(
            self.chain.call(self.router.functions.priceE18(self.d.asset(symbol).id), "read price")
        )

    # ------------------------------------------------------------------ views
    def health(self, account: str) -> Health:
        eq, im, mm = self.chain.call(
            self.ch.functions.accountHealth(checksum(account)), "read health"
        )
        return Health(int(eq), int(im), int(mm))

    def preview(self, account: str, market: str | int) -> Preview:
        m = self.d.market(market)
        return Preview(*self.ch.functions.previewLiquidation(checksum(account), m.id).call())

    def position(self, account: str, market: str | int) -> int:
        return int(self.ch.functions.position(checksum(account), self.d.market(market).id).call())

    def account(self, account: str) -> dict[str, int]:
        cash, nonce, market_mask, collateral_mask, _ = self.ch.functions.account(
            checksum(account)
        ).call()
        return {
            "cash_wad": cash,
            "nonce": nonce,
            "market_mask": market_mask,
            "collateral_mask": collateral_mask,
        }

    def balance(self, account: str, symbol: str) -> int:
        return int(
            self.ch.functions.collateralBalance(
                checksum(account), self.d.collateral(symbol).id
            ).call()
        )

    def events(self, receipt: TxReceipt) -> list[Event]:
        return self.chain.events(receipt)

    def _event(self, receipt: TxReceipt, name: str) -> Event:
        for e in self.chain.events(receipt):
            if e.name == name:
                return e
        raise AssertionError(f"no {name} event in receipt")  # a contract bug, not a user error

    def fn(self, name: str, *args: Any) -> Any:
        """A raw clearinghouse function, for callers that need one not wrapped here."""
        return getattr(self.ch.functions, name)(*args)
