"""The attestation verifier's S1 state rebuilt from its events, and its in-force rule, exactly.

`Clearinghouse._healthAt` asks `AttestationVerifier.requirementInForce` for every account; a keeper
that ranked accounts by the static requirement alone would chase accounts an attestation keeps
healthy and miss those an attestation makes liquidatable. `AttestationMirror` answers the same
question from events (S7), with no call per account:

* `MarginAttested` → the account's applied entry (sequence, position nonce, IM, MM in micro-USD).
* `BatchApplied` → the batch record in ring slot `sequence % RING_SIZE`: issue time, key epoch,
  price mask and prices. As on-chain, an older batch never evicts a newer record, and an entry
  whose record was overwritten is not in force.
* `SignerAdded` / `SignerRemoved` / `ThresholdSet` → the key epoch; `ParamsSet` → the parameters.

`tests/test_keeper_hardening.py` holds `requirement_in_force` equal to the contract's view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from offchain.attest import MICRO_USD_IN_WAD
from offchain.chain.bindings import Event

RING_SIZE = 4096  # AttestationVerifier.RING_SIZE
BPS = 10_000


@dataclass(frozen=True)
class AppliedEntry:
    sequence: int
    position_nonce: int
    im_micro_usd: int
    mm_micro_usd: int


@dataclass(frozen=True)
class BatchRecord:
    sequence: int
    issued_at: int
    key_epoch: int
    price_asset_mask: int
    prices_e18: Mapping[int, int]  # by oracle asset id, for the assets in the mask


@dataclass(frozen=True)
class VerifierParams:
    max_age_s: int
    price_band_bps: int
    floor_bps: int
    cap_bps: int
    max_batch_size: int


@dataclass(frozen=True)
class InForce:
    """What `requirementInForce` returns: the attested (clamped) requirement, or the static one."""

    in_force: bool
    im_wad: int
    mm_wad: int


class AttestationMirror:
    """Applies the verifier's events in order (the caller fetches them)."""

    def __init__(self) -> None:
        self.key_epoch = 0
        self.params: VerifierParams | None = None
        self.entries: dict[str, AppliedEntry] = {}
        self.ring: dict[int, BatchRecord] = {}

    def apply(self, e: Event) -> None:
        a = e.args
        if e.name == "MarginAttested":
            self.entries[str(a["account"])] = AppliedEntry(
                int(a["sequence"]),
                int(a["positionNonce"]),
                int(a["imMicroUsd"]),
                int(a["mmMicroUsd"]),
            )
        elif e.name == "BatchApplied":
            self._record(a)
        elif e.name in ("SignerAdded", "SignerRemoved", "ThresholdSet"):
            self.key_epoch = int(a["keyEpoch"])
        elif e.name == "ParamsSet":
            self.params = VerifierParams(
                int(a["maxAgeSeconds"]),
                int(a["priceBandBps"]),
                int(a["floorBps"]),
                int(a["capBps"]),
                int(a["maxBatchSize"]),
            )

    def _record(self, a: Mapping[str, Any]) -> None:
        sequence = int(a["sequence"])
        slot = sequence % RING_SIZE
        current = self.ring.get(slot)
        # An older batch never evicts a newer record; the same sequence is the same batch.
        if current is not None and current.sequence >= sequence:
            return
        mask = int(a["priceAssetMask"])
        prices = [int(p) for p in a["pricesE18"]]
        assets = [i for i in range(mask.bit_length()) if mask >> i & 1]
        self.ring[slot] = BatchRecord(
            sequence,
            int(a["issuedAt"]),
            int(a["keyEpoch"]),
            mask,
            dict(zip(assets, prices, strict=True)),
        )

    def requirement_in_force(
        self,
        account: str,
        position_nonce: int,
        market_asset_mask: int,
        prices_e18: Mapping[int, int],
        static_im_wad: int,
        static_mm_wad: int,
        now: int,
    ) -> InForce:
        """`AttestationVerifier.requirementInForce` at block time `now`, clause by clause."""
        static = InForce(False, static_im_wad, static_mm_wad)
        e = self.entries.get(account)
        p = self.params
        if e is None or e.sequence == 0 or e.position_nonce != position_nonce or p is None:
            return static
        r = self.ring.get(e.sequence % RING_SIZE)
        if (
            r is None
            or r.sequence != e.sequence
            or r.key_epoch != self.key_epoch
            or r.issued_at > now
            or now - r.issued_at > p.max_age_s
            or market_asset_mask & ~r.price_asset_mask
        ):
            return static
        for asset in range(market_asset_mask.bit_length()):
            if market_asset_mask >> asset & 1:
                current, attested = prices_e18[asset], r.prices_e18[asset]
                if abs(attested - current) * BPS > current * p.price_band_bps:
                    return static
        im = _clamp(e.im_micro_usd * MICRO_USD_IN_WAD, static_im_wad, p)
        mm = _clamp(e.mm_micro_usd * MICRO_USD_IN_WAD, static_mm_wad, p)
        return InForce(True, im, min(mm, im))


def _clamp(attested_wad: int, static_wad: int, p: VerifierParams) -> int:
    """Within [floorBps, capBps] of the static value; the floor rounds up, the cap down."""
    floor = -((-static_wad * p.floor_bps) // BPS)
    cap = static_wad * p.cap_bps // BPS
    return min(max(attested_wad, floor), cap)
