"""The margin in force, from events alone: the account mirror plus the attestation verifier's
S1 state, fetched together so both always stand at the same block (and rewind together)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from offchain.chain.attestations import AttestationMirror
from offchain.chain.bindings import Chain
from offchain.chain.mirror import AccountMirror
from offchain.models import Deployment

log = logging.getLogger("marginsync.mirror")


class MarginMirror(AccountMirror):
    """The account mirror plus the attestation verifier's events, fetched in one `eth_getLogs`
    per block range so both views always stand at the same block (and rewind together)."""

    def __init__(self, chain: Chain, d: Deployment) -> None:
        super().__init__(chain, d.clearinghouse, d.insurance_fund, d.block)
        self.verifier = d.attestation_verifier
        self.attestations = AttestationMirror()
        self.attestor: str | None = None  # from `AttestorSet`; None or zero: static margin only
        self._warned_attestor = False

    _STATE = (*AccountMirror._STATE, "attestations", "attestor")

    def _fetch(self, start: int, end: int) -> list[tuple[int, Any]]:
        addresses = [self.clearinghouse, *([self.verifier] if self.verifier else [])]
        return [(e.block, e) for e in self.chain.get_events(addresses, start, end)]

    def _apply_item(self, item: Any) -> None:
        if item.address.lower() == (self.verifier or "").lower():
            self.attestations.apply(item)
        else:
            self.apply(item)

    def _on_AttestorSet(self, a: dict[str, Any]) -> None:
        self.attestor = str(a["attestor"])

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
        mask = 0
        for market_id, size in state.positions.items():
            if size:
                mask |= 1 << self.markets[market_id].oracle_asset
        if mask == 0 or self.attestor is None or int(self.attestor, 16) == 0:
            return static_mm_wad
        if self.attestor.lower() != (self.verifier or "").lower():
            if not self._warned_attestor:
                log.warning("attestor %s is not the deployment's verifier: static", self.attestor)
                self._warned_attestor = True
            return static_mm_wad
        return self.attestations.requirement_in_force(
            account, state.nonce, mask, prices, static_im_wad, static_mm_wad, now
        ).mm_wad
