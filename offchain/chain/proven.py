"""The proof registry's state rebuilt from its events, and the proof gate, exactly.

`Clearinghouse._healthAt` counts an attested MM above the static MM only as far as
`MarginProofs.provenRequirement` backs it (P2, SPEC I34). A keeper that ignored the gate would
send liquidations that revert `AccountHealthy`; `ProofMirror` answers the same question from
events (S7), with no call per account:

* `RequirementProven` → the account's entry (position nonce, IM, MM in micro-USD, price set,
  model version); `PricesProven` → the prices of a price set (1e-8 USD, by asset id).
* `ModelSet` → the current model version; `PriceBandSet` → the band.

`tests/test_proof_gate.py` holds `gated_mm` and `proven_mm_wad` equal to the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from offchain.attest import MICRO_USD_IN_WAD
from offchain.chain.bindings import Event

BPS = 10_000
E18_PER_E8 = 10**10
PROOF_ASSETS = 8  # MarginProofInputs.ASSETS: underlyings a proof can cover


@dataclass(frozen=True)
class ProvenEntry:
    position_nonce: int
    im_micro_usd: int
    mm_micro_usd: int
    price_set_id: int
    model_version: int


class ProofMirror:
    """Applies the registry's events in order (the caller fetches them)."""

    def __init__(self) -> None:
        self.model_version = 0
        self.price_band_bps = 0
        self.entries: dict[str, ProvenEntry] = {}
        self.price_sets: dict[int, tuple[int, ...]] = {}

    def apply(self, e: Event) -> None:
        a = e.args
        if e.name == "RequirementProven":
            self.entries[str(a["account"])] = ProvenEntry(
                int(a["positionNonce"]),
                int(a["imMicroUsd"]),
                int(a["mmMicroUsd"]),
                int(a["priceSetId"]),
                int(a["modelVersion"]),
            )
        elif e.name == "PricesProven":
            self.price_sets[int(a["priceSetId"])] = tuple(int(p) for p in a["pricesE8"])
        elif e.name == "ModelSet":
            self.model_version = int(a["version"])
        elif e.name == "PriceBandSet":
            self.price_band_bps = int(a["priceBandBps"])

    def proven_mm_wad(
        self, account: str, position_nonce: int, asset_mask: int, prices_e18: Mapping[int, int]
    ) -> int:
        """`provenRequirement`'s MM: the proven MM in force at this nonce and these prices (by
        asset id, for the assets in `asset_mask`), 0 if none."""
        e = self.entries.get(account)
        if (
            e is None
            or e.position_nonce != position_nonce
            or e.model_version != self.model_version
            or asset_mask >> PROOF_ASSETS
        ):
            return 0
        proven = self.price_sets[e.price_set_id]
        for asset in (i for i in range(PROOF_ASSETS) if asset_mask >> i & 1):
            current = prices_e18[asset]
            gap = abs(proven[asset] * E18_PER_E8 - current)
            if gap * BPS > current * self.price_band_bps:
                return 0
        return e.mm_micro_usd * MICRO_USD_IN_WAD


def gated_mm(static_mm_wad: int, attested_mm_wad: int, proven_mm_wad: int) -> int:
    """P2 (SPEC I34), as `ClearinghouseBase._healthAt` applies it: an attested MM above the
    static one counts only up to the proven MM (0 when none is in force); one below it stands."""
    return min(attested_mm_wad, max(static_mm_wad, proven_mm_wad))
