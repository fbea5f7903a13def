"""The backstop (`marginsync backstop`): takes over what the insurance fund absorbed and unwinds it.

Liquidations move closed positions to the insurance fund at the oracle price (SPEC I24). Held,
those positions carry market risk the fund's equity pays for; unwound at once, the fund keeps
most of the penalty. The fund's standing offer (`BackstopOffer`, SPEC I31) sells them to anyone
at the oracle price less a bounded discount. This service is such a taker, run by anyone with
capital (one round per new block):

1. Read the offer in every market (size and discounted price) and the backstop's free margin.
2. Take what its capital carries: at most `capital_use_bps` of (equity − IM) / IM rate in
   notional per round, each take limited to the price it read (a moved oracle reverts the take
   instead of filling worse).
3. Hedge: hand every position the backstop holds (this round's fills, and whatever an earlier
   round or a crashed process left) to a `Hedge`, which returns the transactions that unwind it
   elsewhere (the development venue in `offchain/ops/backstop.py`, the lab's market maker in the
   lab). The discount is the backstop's margin for that round trip.
4. The last resort (SPEC I32): while the fund still holds a position and its equity is below its
   maintenance margin, rank the opposite positions and auto-deleverage them (`AutoDeleverage`).
   The ranking, which the contract checks within the list: accounts with equity ≥ IM, highest
   equity / MM first (the most over-margined, which profit on the move makes them; ties by
   address), at most `max_adl_accounts` per market and round.
5. Book what the fund has lost and nobody booked (`bookDeficit`, SPEC I25): the fund's losses
   are on the books at every round, not only when an account goes insolvent.

The same `Backstop` runs in the CLI (through the pre-flighted sender) and in the lab (through its
batched transport at the scenario's clock): a `Wire` carries calls and transactions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cmp_to_key
from typing import Any, Protocol

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector
from pydantic import BaseModel, ConfigDict, Field

from offchain.chain import Chain, checksum
from offchain.errors import ConfigError
from offchain.models import WAD, Deployment
from offchain.risk.health import BPS


class BackstopConfig(BaseModel):
    """How much of its capital the backstop commits per round, and the smallest take worth gas."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capital_use_bps: int = Field(default=9_000, gt=0, le=BPS)
    min_take_usd: float = Field(default=10.0, ge=0)
    max_adl_accounts: int = Field(default=20, ge=1)


@dataclass(frozen=True)
class Call:
    """One transaction: who sends it, to what, and what it does (named in errors)."""

    sender: str
    to: str
    data: bytes
    action: str


class Wire(Protocol):
    """Calls and transactions for one round; the CLI's and the lab's carry them differently."""

    def call(self, to: str, data: bytes) -> bytes: ...

    def send(self, calls: Sequence[Call]) -> list[bool]:
        """Sends `calls` in order; whether each succeeded."""
        ...


# A fill to unwind: (market id, the backstop's size change, the oracle price) → transactions.
Hedge = Callable[[int, int, int], list[Call]]


@dataclass(frozen=True)
class Take:
    market_id: int
    size_delta_wad: int  # the backstop's change: the fund's position, or part of it
    price_e18: int  # the offered price, also the take's limit
    oracle_price_e18: int

    @property
    def notional_wad(self) -> int:
        return abs(self.size_delta_wad) * self.oracle_price_e18 // WAD

    @property
    def discount_wad(self) -> int:
        """What the backstop gains against the oracle price (the fund's cost of unwinding)."""
        return abs(self.size_delta_wad) * abs(self.oracle_price_e18 - self.price_e18) // WAD


@dataclass
class BackstopReport:
    """What one round did; the CLI prints it, tests assert on it."""

    block: int = 0
    offered: int = 0  # markets where the fund held a position
    taken: list[Take] = field(default_factory=list)
    failed: int = 0  # takes that did not go through (another taker was first, prices moved)
    hedged: int = 0
    deleveraged: int = 0  # ADL calls that went through (I32)
    booked_wad: int = 0  # deficit booked this round (I25)


def rank_for_adl(fund_size: int, accounts: dict[str, tuple[int, int, int, int]]) -> list[str]:
    """The ADL ranking (SPEC I32): of `accounts` (address → (size, equity, IM, MM) in the
    market), those opposite the fund with equity ≥ IM, by equity / MM descending, ties by
    address; exact in integers (cross-multiplied), as the contract checks it."""
    eligible = [
        (a, equity, mm)
        for a, (size, equity, im, mm) in accounts.items()
        if size and (size > 0) != (fund_size > 0) and equity >= im and mm > 0
    ]

    def before(x: tuple[str, int, int], y: tuple[str, int, int]) -> int:
        # x first when equity_x / mm_x > equity_y / mm_y; ties by address.
        left, right = x[1] * y[2], y[1] * x[2]
        return -1 if left > right else 1 if left < right else 2 * (x[0].lower() > y[0].lower()) - 1

    return [row[0] for row in sorted(eligible, key=cmp_to_key(before))]


def plan_takes(
    offers: dict[int, tuple[int, int]],
    oracle_e18: dict[int, int],
    im_bps: dict[int, int],
    free_margin_wad: int,
    config: BackstopConfig,
) -> list[Take]:
    """Takes for one round: each market's offer `(fund size, offered price)`, largest notional
    first, as far as `capital_use_bps` of the free margin carries at each market's IM rate."""
    budget = free_margin_wad * config.capital_use_bps // BPS
    min_take = int(config.min_take_usd * WAD)
    takes: list[Take] = []
    order = sorted(
        (m for m, (size, price) in offers.items() if size and price and m in oracle_e18),
        key=lambda m: -abs(offers[m][0]) * oracle_e18[m],
    )
    for m in order:
        size, price = offers[m]
        oracle = oracle_e18[m]
        # IM of a size s is s · oracle · imBps / 1e4; the budget pays for at most that much.
        affordable = budget * BPS * WAD // (oracle * im_bps[m]) if budget > 0 else 0
        taken = min(abs(size), affordable)
        if taken == 0 or taken * oracle // WAD < min_take:
            continue
        take = Take(m, taken if size > 0 else -taken, price, oracle)
        budget -= -(-take.notional_wad * im_bps[m] // BPS)
        takes.append(take)
    return takes


class _Abi:
    """Encoding and decoding of the few functions the backstop uses, with eth_abi alone."""

    def __init__(self, chain: Chain) -> None:
        self._fns: dict[str, dict[str, Any]] = {}
        for contract in ("Clearinghouse", "BackstopOffer", "AutoDeleverage", "OracleRouter"):
            for item in chain.artifacts.abi(contract):
                if item.get("type") == "function":
                    self._fns.setdefault(str(item["name"]), dict(item))

    def encode(self, function: str, *args: Any) -> bytes:
        abi = self._fns[function]
        types = [_type(i) for i in abi["inputs"]]
        return function_abi_to_4byte_selector(abi) + abi_encode(types, list(args))  # type: ignore[arg-type]

    def decode(self, function: str, data: bytes) -> tuple[Any, ...]:
        return tuple(abi_decode([_type(o) for o in self._fns[function]["outputs"]], data))


def _type(item: dict[str, Any]) -> str:
    kind = str(item["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_type(c) for c in item["components"]) + ")" + kind[5:]
    return kind


def matcher_hedge(chain: Chain, deployment: Deployment, backstop: str, counterparty: str) -> Hedge:
    """Unwinds each fill with `counterparty` at the oracle price, settled by the deployment's
    matcher: a venue whose matcher you run (the development venue, the lab's market maker). A
    backstop on a production venue hedges there instead, with a `Hedge` of its own."""
    abi = _Abi(chain)
    ch = str(checksum(deployment.clearinghouse))

    def hedge(market_id: int, size_delta_wad: int, oracle_price_e18: int) -> list[Call]:
        data = abi.encode(
            "settleTrade", market_id, backstop, counterparty, -size_delta_wad, oracle_price_e18
        )
        return [Call(deployment.matcher, ch, data, f"hedge market {market_id}")]

    return hedge


class Backstop:
    def __init__(
        self,
        chain: Chain,
        deployment: Deployment,
        address: str,
        wire: Wire,
        *,
        hedge: Hedge | None = None,
        config: BackstopConfig | None = None,
        accounts: Callable[[], Sequence[str]] = lambda: (),
    ) -> None:
        """`accounts`: every account that may hold a position (from events: the keeper's
        mirror in the CLI, the lab's ledger in the lab), the ADL candidates."""
        if deployment.backstop_offer is None:
            raise ConfigError(
                "this deployment has no backstop offer", "redeploy: marginsync deploy"
            )
        self.d = deployment
        self.address = str(checksum(address))
        self.wire = wire
        self.hedge = hedge
        self.config = config or BackstopConfig()
        self.accounts = accounts
        self._abi = _Abi(chain)
        adl = deployment.auto_deleverage
        self._adl = str(checksum(adl)) if adl else None
        self._offer = str(checksum(deployment.backstop_offer))
        self._ch = str(checksum(deployment.clearinghouse))
        self._router = str(checksum(deployment.oracle_router))

    def _view(self, to: str, function: str, *args: Any) -> tuple[Any, ...]:
        return self._abi.decode(function, self.wire.call(to, self._abi.encode(function, *args)))

    def round(self) -> BackstopReport:
        report = BackstopReport()
        offers: dict[int, tuple[int, int]] = {}
        oracle: dict[int, int] = {}
        for m in self.d.markets:
            size, price = self._view(self._offer, "offer", m.id)
            if size:
                report.offered += 1
                offers[m.id] = (int(size), int(price))
                usable_price, status = self._view(self._router, "tryPriceE18", m.oracle_asset)
                if status == 0:
                    oracle[m.id] = int(usable_price)
        if offers:
            equity, im, _ = self._view(self._ch, "accountHealth", self.address)[0]
            free = max(int(equity) - int(im), 0)
            im_bps = {m.id: m.im_bps for m in self.d.markets}
            takes = plan_takes(offers, oracle, im_bps, free, self.config)
            calls = [
                Call(
                    self.address,
                    self._offer,
                    self._abi.encode("take", t.market_id, abs(t.size_delta_wad), t.price_e18),
                    f"take the fund's offer on market {t.market_id}",
                )
                for t in takes
            ]
            for take, ok in zip(takes, self.wire.send(calls), strict=True):
                if ok:
                    report.taken.append(take)
                else:
                    report.failed += 1
            report.deleveraged = self._deleverage()
        report.hedged = self._hedge()
        report.booked_wad = self._book_deficit()
        return report

    def _hedge(self) -> int:
        """Unwinds everything the backstop holds where the price is usable; hedges sent."""
        if self.hedge is None:
            return 0
        calls: list[Call] = []
        for m in self.d.markets:
            (size,) = self._view(self._ch, "position", self.address, m.id)
            if size:
                price, status = self._view(self._router, "tryPriceE18", m.oracle_asset)
                if status == 0:
                    calls += self.hedge(m.id, int(size), int(price))
        return sum(self.wire.send(calls))

    def _deleverage(self) -> int:
        """ADL in every market the fund still holds while its equity is below its MM (I32)."""
        if self._adl is None:
            return 0
        done = 0
        for m in self.d.markets:
            equity, _, mm = self._view(self._ch, "accountHealth", self.d.insurance_fund)[0]
            if int(equity) >= int(mm):
                return done
            (fund_size,) = self._view(self._ch, "position", self.d.insurance_fund, m.id)
            if not fund_size:
                continue
            rows: dict[str, tuple[int, int, int, int]] = {}
            for a in self.accounts():
                if a.lower() == self.d.insurance_fund.lower():
                    continue
                (size,) = self._view(self._ch, "position", a, m.id)
                if size and (size > 0) != (fund_size > 0):
                    e, im, mm_a = self._view(self._ch, "accountHealth", a)[0]
                    rows[a] = (int(size), int(e), int(im), int(mm_a))
            ranked = rank_for_adl(int(fund_size), rows)[: self.config.max_adl_accounts]
            if ranked:
                data = self._abi.encode("adl", m.id, ranked)
                call = Call(self.address, self._adl, data, f"auto-deleverage market {m.id}")
                done += sum(self.wire.send([call]))
        return done

    def _book_deficit(self) -> int:
        """Books the fund's unbooked loss (permissionless, I25); the amount booked."""
        _, implied = self._view(self._ch, "backstopDeficit")
        (booked,) = self._view(self._ch, "deficitWad")
        if int(implied) <= int(booked):
            return 0
        call = Call(self.address, self._ch, self._abi.encode("bookDeficit"), "book the deficit")
        return int(implied) - int(booked) if self.wire.send([call])[0] else 0

    def run(
        self,
        head: Callable[[], int],
        *,
        poll_interval_s: float = 1.0,
        rounds: int | None = None,
        on_round: Callable[[int, BackstopReport], None] | None = None,
    ) -> None:
        """One round per new block (`head` gives the latest), `rounds` times or forever."""
        last = -1
        n = 0
        while rounds is None or n < rounds:
            block = head()
            if block == last:
                time.sleep(poll_interval_s)
                continue
            report = self.round()
            report.block = last = block
            if on_round is not None:
                on_round(n, report)
            n += 1
