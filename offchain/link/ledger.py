"""One venue as the cross-venue engine and its members read it: the product's account mirror of
the clearinghouse plus the VenueLink's pledges, pledge nonces, allowances and applied
certificates, from one `eth_getLogs` per block range (both views stand at the same block and
rewind together on a reorganisation, as MarginMirror's do).

Rebuilt from `PledgeChanged` (every change to a pledge, with the account's new pledge nonce),
`CertificateApplied` and `RebalanceAllowanceSet` alone (IVenueLink's events say so)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from offchain.chain.bindings import Chain
from offchain.chain.mirror import AccountMirror
from offchain.models import Deployment


class PledgeState(IntEnum):
    NONE = 0
    ACTIVE = 1
    RELEASING = 2
    RELEASED = 3


@dataclass(frozen=True)
class Pledge:
    pledge_id: int
    account: str
    to_venue: int
    amount: int  # quote units remaining
    state: PledgeState
    nonce: int  # the account's pledge nonce after this pledge's last change


@dataclass(frozen=True)
class Deficit:
    """A loss this venue booked on an account that its collateral could not cover (X4,
    `InsolvencyResolved`: the account's debt moved to the insurance fund): the claim against
    pledges in this venue's favour is keyed by where it was booked."""

    account: str
    debt_wad: int
    block: int
    log_index: int


@dataclass(frozen=True)
class Applied:
    """An account's last certificate on this venue, as `CertificateApplied` reported it."""

    sequence: int
    issued_at: int
    digest: bytes
    pledged_wad: int


@dataclass
class Ledger:
    """The VenueLink's state, event by event."""

    pledges: dict[int, Pledge] = field(default_factory=dict)
    nonces: dict[str, int] = field(default_factory=dict)
    allowances: dict[str, int] = field(default_factory=dict)
    applied: dict[str, Applied] = field(default_factory=dict)
    paid_claims: set[bytes] = field(default_factory=set)
    max_age_s: int = 30

    def apply(self, e: Any) -> None:
        a = e.args
        if e.name == "PledgeChanged":
            account = str(a["account"])
            self.pledges[int(a["pledgeId"])] = Pledge(
                int(a["pledgeId"]),
                account,
                int(a["toVenue"]),
                int(a["amount"]),
                PledgeState(int(a["state"])),
                int(a["pledgeNonce"]),
            )
            self.nonces[account] = int(a["pledgeNonce"])
        elif e.name == "CertificateApplied":
            applied = a["applied"]
            self.applied[str(a["account"])] = Applied(
                int(applied["sequence"]),
                int(applied["issuedAt"]),
                bytes(a["digest"]),
                int(applied["pledgedWad"]),
            )
        elif e.name == "ClaimPaid":
            self.paid_claims.add(bytes(a["claimId"]))
        elif e.name == "RebalanceAllowanceSet":
            self.allowances[str(a["account"])] = int(a["allowance"])
        elif e.name == "ParamsSet":
            self.max_age_s = int(a["maxAgeSeconds"])

    # ------------------------------------------------------------------ the view's questions
    def pledge_nonce(self, account: str) -> int:
        return self.nonces.get(account, 0)

    def active_pledges(self, account: str) -> Iterable[tuple[int, int, int]]:
        return [
            (p.pledge_id, p.to_venue, p.amount)
            for p in self.pledges.values()
            if p.account == account and p.state is PledgeState.ACTIVE and p.amount > 0
        ]

    def accounts(self) -> set[str]:
        return {p.account for p in self.pledges.values()}

    def pledges_of(self, account: str, *states: PledgeState) -> list[Pledge]:
        return [p for p in self.pledges.values() if p.account == account and p.state in states]


class VenueMirror(AccountMirror):
    """The clearinghouse's accounts and the venue link's ledger, fetched together."""

    _STATE = (*AccountMirror._STATE, "ledger", "deficits")

    def __init__(self, chain: Chain, d: Deployment) -> None:
        super().__init__(chain, d.clearinghouse, d.insurance_fund, d.block)
        self.link = str(d.venue_link)
        self.ledger = Ledger()
        self.deficits: list[Deficit] = []

    def _fetch(self, start: int, end: int) -> list[tuple[int, Any]]:
        events = self.chain.get_events([self.clearinghouse, self.link], start, end)
        return [(e.block, e) for e in events]

    def _apply_item(self, item: Any) -> None:
        if item.address.lower() == self.link.lower():
            self.ledger.apply(item)
            return
        self.apply(item)
        if item.name == "InsolvencyResolved" and item.args["debtWad"] > 0:
            args = item.args
            self.deficits.append(
                Deficit(str(args["account"]), int(args["debtWad"]), item.block, item.log_index)
            )
