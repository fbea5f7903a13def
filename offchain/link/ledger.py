"""One venue as the cross-venue engine and its members read it: the product's margin mirror
with the venue's LinkMirror (its VenueLink's certificates, pledges, nonces, allowances, paid
claims; offchain/link/mirror.py), plus the losses the venue booked on accounts
(`InsolvencyResolved`'s debt, with its block and log index: a claim's id, X4). All from one
`eth_getLogs` per block range, rewound together on a reorganisation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from offchain.chain.bindings import Chain
from offchain.chain.margin_mirror import MarginMirror
from offchain.link.mirror import LinkMirror
from offchain.models import Deployment


@dataclass(frozen=True)
class Loss:
    """A loss this venue booked on an account that its collateral could not cover: the debt
    `InsolvencyResolved` moved to the insurance fund, and where it was booked."""

    account: str
    debt_wad: int
    block: int
    log_index: int


class VenueMirror(MarginMirror):
    """A linked venue's margin mirror, its link's ledger always present (`ledger`)."""

    _STATE = (*MarginMirror._STATE, "losses")

    def __init__(self, chain: Chain, d: Deployment) -> None:
        link = str(d.venue_link)
        registry = str(chain.contract("VenueLink", link).functions.registry().call())
        super().__init__(chain, d, LinkMirror(link, registry if int(registry, 16) else None))
        self.losses: list[Loss] = []

    @property
    def ledger(self) -> LinkMirror:
        assert isinstance(self.link, LinkMirror)  # set at construction, kept by rewinds
        return self.link

    def _apply_item(self, item: Any) -> None:
        super()._apply_item(item)
        if (
            item.name == "InsolvencyResolved"
            and item.address.lower() == self.clearinghouse.lower()
            and item.args["debtWad"] > 0
        ):
            args = item.args
            self.losses.append(
                Loss(str(args["account"]), int(args["debtWad"]), item.block, item.log_index)
            )
