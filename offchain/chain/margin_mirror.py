"""The margin in force, from events alone: the account mirror plus the attestation verifier's
S1 state, the proof registry's entries (the proof gate, P2) and, on a linked venue, its
VenueLink's certificates and its committee's key epoch, fetched together so all views always
stand at the same block (and rewind together).

The link's view is given from above (offchain/link/mirror.py builds it: `linked_margin_mirror`),
since the link room sits above the chain layer; without it, a clearinghouse whose attestor is
a venue link is mirrored as static margin, as any attestor the mirror does not know."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from offchain.chain.attestations import AttestationMirror, InForce
from offchain.chain.bindings import Chain, Event
from offchain.chain.mirror import AccountMirror
from offchain.chain.proven import ProofMirror, gated_mm
from offchain.models import Deployment

log = logging.getLogger("marginsync.mirror")


class LinkView(Protocol):
    """A venue link's certificates and its committee's key epoch, from their events
    (offchain/link/mirror.py's `LinkMirror`)."""

    address: str  # the VenueLink
    committee: str | None  # its committee registry
    inner: str | None  # the verifier it asks when no certificate is in force
    key_epoch: int

    def apply(self, e: Event) -> None: ...

    def apply_registry(self, e: Event) -> None: ...

    def requirement_in_force(
        self,
        account: str,
        position_nonce: int,
        market_asset_mask: int,
        prices_e18: Mapping[int, int],
        static_im_wad: int,
        static_mm_wad: int,
        now: int,
        key_epoch: int,
    ) -> InForce: ...


class MarginMirror(AccountMirror):
    """The account mirror plus the attestation verifier's and the proof registry's events,
    fetched in one `eth_getLogs` per block range so all views stand at the same block."""

    def __init__(self, chain: Chain, d: Deployment, link: LinkView | None = None) -> None:
        super().__init__(chain, d.clearinghouse, d.insurance_fund, d.block)
        self.verifier = d.attestation_verifier
        self.registry = d.margin_proofs
        self.attestations = AttestationMirror()
        self.proofs = ProofMirror()
        self.link = link
        self.attestor: str | None = None  # from `AttestorSet`; None or zero: static margin only
        self.gate: str | None = None  # from `MarginProofsSet`; None or zero: no proof gate
        self._warned: set[str] = set()

    _STATE = (*AccountMirror._STATE, "attestations", "attestor", "proofs", "gate", "link")

    def _fetch(self, start: int, end: int) -> list[tuple[int, Any]]:
        linked = (self.link.address, self.link.committee) if self.link else ()
        others = (self.verifier, self.registry, *linked)
        addresses = [self.clearinghouse, *(a for a in others if a)]
        return [(e.block, e) for e in self.chain.get_events(addresses, start, end)]

    def _apply_item(self, item: Any) -> None:
        source = item.address.lower()
        if source == (self.verifier or "").lower():
            self.attestations.apply(item)
        elif source == (self.registry or "").lower():
            self.proofs.apply(item)
        elif self.link and source == self.link.address.lower():
            self.link.apply(item)
        elif self.link and source == (self.link.committee or "").lower():
            self.link.apply_registry(item)
        else:
            self.apply(item)

    def _on_AttestorSet(self, a: dict[str, Any]) -> None:
        self.attestor = str(a["attestor"])

    def _on_MarginProofsSet(self, a: dict[str, Any]) -> None:
        self.gate = str(a["marginProofs"])

    def _unknown(self, role: str, address: str, known: str | None) -> bool:
        """True (once warned) if the clearinghouse names a contract the deployment does not."""
        if address.lower() == (known or "").lower():
            return False
        if role not in self._warned:
            log.warning("%s %s is not the deployment's: its view is not mirrored", role, address)
            self._warned.add(role)
        return True

    def requirement_in_force(
        self,
        account: str,
        static_im_wad: int,
        static_mm_wad: int,
        prices: Mapping[int, int],
        now: int,
    ) -> InForce:
        """What the clearinghouse's attestor answers for `account` at block time `now`: on a
        linked venue the link's certificate first, then (as the link asks its inner verifier)
        the attestation verifier; static where the mirror does not know the contract asked."""
        static = InForce(False, static_im_wad, static_mm_wad)
        state = self.accounts[account]
        mask = self.market_asset_mask(account)
        attestor = self.attestor
        if mask == 0 or attestor is None or int(attestor, 16) == 0:
            return static
        if self.link and attestor.lower() == self.link.address.lower():
            linked = self.link.requirement_in_force(
                account, state.nonce, mask, prices, static_im_wad, static_mm_wad, now,
                self.link.key_epoch,
            )  # fmt: skip
            attestor = self.link.inner
            if linked.in_force or attestor is None or int(attestor, 16) == 0:
                return linked
        if self._unknown("attestor", attestor, self.verifier):
            return static
        return self.attestations.requirement_in_force(
            account, state.nonce, mask, prices, static_im_wad, static_mm_wad, now
        )

    def maintenance_in_force(
        self,
        account: str,
        static_im_wad: int,
        static_mm_wad: int,
        prices: Mapping[int, int],
        now: int,
    ) -> int:
        """The MM `_healthAt` uses for `account` at block time `now`."""
        attested = self.requirement_in_force(
            account, static_im_wad, static_mm_wad, prices, now
        ).mm_wad
        if attested <= static_mm_wad or self.gate is None or int(self.gate, 16) == 0:
            return attested
        if self._unknown("proof registry", self.gate, self.registry):
            return static_mm_wad  # its proofs are unknown here: never count on one (P2)
        state = self.accounts[account]
        mask = self.market_asset_mask(account)
        proven = self.proofs.proven_mm_wad(account, state.nonce, mask, prices)
        return gated_mm(static_mm_wad, attested, proven)
