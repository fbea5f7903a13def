"""One venue as the cross-venue engine and its members read it: the product's account mirror of
the clearinghouse plus the VenueLink's pledges, pledge nonces, allowances and applied
certificates, from one `eth_getLogs` per block range (both views stand at the same block and
rewind together on a reorganisation, as MarginMirror's do), and the losses the venue booked on
accounts (`InsolvencyResolved`, with where: a claim's id, X4).

The ledger is rebuilt from `PledgeChanged` (every change to a pledge, with the account's new
pledge nonce), `CertificateApplied`, `ClaimPaid`, `RebalanceAllowanceSet` and `ParamsSet` alone.
"""

from __future__ import annotations

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
    account: str
    to_venue: int
    state: PledgeState
    amount: int  # quote units remaining


@dataclass(frozen=True)
class Applied:
    """An account's last certificate on this venue (`CertificateApplied`)."""

    sequence: int
    issued_at: int


@dataclass(frozen=True)
class Loss:
    """A loss this venue booked on an account that its collateral could not cover: the debt
    `InsolvencyResolved` moved to the insurance fund, and where it was booked (the claim id)."""

    account: str
    debt_wad: int
    block: int
    log_index: int


@dataclass
class Ledger:
    """The VenueLink's state, event by event."""

    pledges: dict[int, Pledge] = field(default_factory=dict)
    pledge_nonces: dict[str, int] = field(default_factory=dict)
    allowances: dict[str, int] = field(default_factory=dict)
    certificates: dict[str, Applied] = field(default_factory=dict)
    paid_claims: set[bytes] = field(default_factory=set)
    max_age_s: int = 30

    def apply(self, e: Any) -> None:
        a = e.args
        if e.name == "PledgeChanged":
            account = str(a["account"])
            self.pledges[int(a["pledgeId"])] = Pledge(
                account, int(a["toVenue"]), PledgeState(int(a["state"])), int(a["amount"])
            )
            self.pledge_nonces[account] = int(a["pledgeNonce"])
        elif e.name == "CertificateApplied":
            applied = a["applied"]
            self.certificates[str(a["account"])] = Applied(
                int(applied["sequence"]), int(applied["issuedAt"])
            )
        elif e.name == "ClaimPaid":
            self.paid_claims.add(bytes(a["claimId"]))
        elif e.name == "RebalanceAllowanceSet":
            self.allowances[str(a["account"])] = int(a["allowance"])
        elif e.name == "ParamsSet":
            self.max_age_s = int(a["maxAgeSeconds"])


class VenueMirror(AccountMirror):
    """The clearinghouse's accounts and the venue link's ledger, fetched together."""

    _STATE = (*AccountMirror._STATE, "link", "losses")

    def __init__(self, chain: Chain, d: Deployment) -> None:
        super().__init__(chain, d.clearinghouse, d.insurance_fund, d.block)
        self.venue_link = str(d.venue_link)
        self.link = Ledger()
        self.losses: list[Loss] = []

    def _fetch(self, start: int, end: int) -> list[tuple[int, Any]]:
        events = self.chain.get_events([self.clearinghouse, self.venue_link], start, end)
        return [(e.block, e) for e in events]

    def _apply_item(self, item: Any) -> None:
        if item.address.lower() == self.venue_link.lower():
            self.link.apply(item)
            return
        self.apply(item)
        if item.name == "InsolvencyResolved" and item.args["debtWad"] > 0:
            args = item.args
            self.losses.append(
                Loss(str(args["account"]), int(args["debtWad"]), item.block, item.log_index)
            )
