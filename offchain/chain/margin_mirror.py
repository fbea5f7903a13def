"""The margin in force, from events alone: the account mirror plus the attestation verifier's
S1 state and the proof registry's entries (the proof gate, P2), fetched together so all three
always stand at the same block (and rewind together)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from offchain.chain.attestations import AttestationMirror
from offchain.chain.bindings import Chain
from offchain.chain.mirror import AccountMirror
from offchain.chain.proven import ProofMirror, gated_mm
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
        self.attestor: str | None = None  # from `AttestorSet`; None or zero: static margin only
        self.gate: str | None = None  # from `MarginProofsSet`; None or zero: no proof gate
        self._warned: set[str] = set()

    _STATE = (*AccountMirror._STATE, "attestations", "attestor", "proofs", "gate")

    def _fetch(self, start: int, end: int) -> list[tuple[int, Any]]:
        addresses = [self.clearinghouse, *(a for a in (self.verifier, self.registry) if a)]
        return [(e.block, e) for e in self.chain.get_events(addresses, start, end)]

    def _apply_item(self, item: Any) -> None:
        if item.address.lower() == (self.verifier or "").lower():
            self.attestations.apply(item)
        elif item.address.lower() == (self.registry or "").lower():
            self.proofs.apply(item)
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

    def maintenance_in_force(
        self,
        account: str,
        static_im_wad: int,
        static_mm_wad: int,
        prices: Mapping[int, int],
        now: int,
    ) -> int:
        """The MM `_healthAt` uses for `account` at block time `now`."""
        state = self.accounts[account]
        mask = self.market_asset_mask(account)
        if mask == 0 or self.attestor is None or int(self.attestor, 16) == 0:
            return static_mm_wad
        if self._unknown("attestor", self.attestor, self.verifier):
            return static_mm_wad
        attested = self.attestations.requirement_in_force(
            account, state.nonce, mask, prices, static_im_wad, static_mm_wad, now
        ).mm_wad
        if attested <= static_mm_wad or self.gate is None or int(self.gate, 16) == 0:
            return attested
        if self._unknown("proof registry", self.gate, self.registry):
            return static_mm_wad  # its proofs are unknown here: never count on one (P2)
        proven = self.proofs.proven_mm_wad(account, state.nonce, mask, prices)
        return gated_mm(static_mm_wad, attested, proven)
