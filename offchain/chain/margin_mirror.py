"""The margin in force, from events alone: the account mirror plus the attestation verifier's
S1 state, the proof registry's entries (the proof gate, P2) and, on a linked venue, its
VenueLink's certificates and its committee's key epoch, fetched together so all views always
stand at the same block (and rewind together)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from offchain.chain.attestations import AttestationMirror, InForce
from offchain.chain.bindings import Chain
from offchain.chain.mirror import AccountMirror
from offchain.chain.proven import ProofMirror, gated_mm
from offchain.link.mirror import LinkMirror
from offchain.models import Deployment

log = logging.getLogger("marginsync.mirror")


class MarginMirror(AccountMirror):
    """The account mirror plus the attestation verifier's and the proof registry's events,
    fetched in one `eth_getLogs` per block range so all views stand at the same block."""

    def __init__(self, chain: Chain, d: Deployment) -> None:
        super().__init__(chain, d.clearinghouse, d.insurance_fund, d.block)
        self.verifier = d.attestation_verifier
        self.registry = d.margin_proofs
        self.attestations = AttestationMirror()
        self.proofs = ProofMirror()
        self.venue_link = d.venue_link
        self.link = LinkMirror()
        # The committee registry is fixed when the link is configured (once): read it here, so
        # its key-epoch events come in the same `eth_getLogs` as everything else.
        self.committee = _committee_of(chain, d.venue_link)
        self.attestor: str | None = None  # from `AttestorSet`; None or zero: static margin only
        self.gate: str | None = None  # from `MarginProofsSet`; None or zero: no proof gate
        self._warned: set[str] = set()

    _STATE = (*AccountMirror._STATE, "attestations", "attestor", "proofs", "gate", "link")

    def _fetch(self, start: int, end: int) -> list[tuple[int, Any]]:
        others = (self.verifier, self.registry, self.venue_link, self.committee)
        addresses = [self.clearinghouse, *(a for a in others if a)]
        return [(e.block, e) for e in self.chain.get_events(addresses, start, end)]

    def _apply_item(self, item: Any) -> None:
        source = item.address.lower()
        if source == (self.verifier or "").lower():
            self.attestations.apply(item)
        elif source == (self.registry or "").lower():
            self.proofs.apply(item)
        elif source == (self.venue_link or "").lower():
            self.link.apply(item)
        elif source == (self.committee or "").lower():
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
        if self.venue_link and attestor.lower() == self.venue_link.lower():
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


def _committee_of(chain: Chain, venue_link: str | None) -> str | None:
    """The committee registry a venue link verifies with (None: no link, or not configured)."""
    if not venue_link:
        return None
    registry = str(chain.contract("VenueLink", venue_link).functions.registry().call())
    return registry if int(registry, 16) else None
