"""The attestation verifier's S1 state rebuilt from its events, and its in-force rule, exactly.

`Clearinghouse._healthAt` asks `AttestationVerifier.requirementInForce` for every account; a keeper
that ranked accounts by the static requirement alone would chase accounts an attestation keeps
healthy and miss those an attestation makes liquidatable. `AttestationMirror` answers the same
question from events (S7), with no call per account:

* `BatchApplied` → its packed entries whose bit is set in `appliedBits` become their accounts'
  applied entries (sequence, position nonce, IM, MM in micro-USD; I36), and the batch record
  goes into ring slot `sequence % RING_SIZE`: issue time, key epoch, price mask and prices. As
  on-chain, an older batch never evicts a newer record, and an entry whose record was
  overwritten is not in force.
* `SignerAdded` / `SignerRemoved` / `ThresholdSet` → the key epoch; `ParamsSet` → the parameters.

This is the one implementation of the in-force rule in Python. `view` applies it to every
account at once (the engine's policy and the lab use it); `requirement_in_force` is the same rule
for one account, with the clamp, exactly as the contract computes it (the keeper uses it);
`tests/test_keeper_hardening.py` holds it equal to the contract through every clause.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from offchain.attest import MICRO_USD_IN_WAD, applied_entries
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
class AttestedView:
    """Per account (see `AttestationMirror.view`): whether its attestation is in force now,
    every S1 clause checked; the age of its batch (NaN where it has none); and the largest gap,
    over the account's assets, between a price its batch was computed from and the current one,
    in bps (inf where unknown, 0 for an account without assets)."""

    in_force: NDArray[np.bool_]
    age_s: NDArray[np.float64]
    gap_bps: NDArray[np.float64]


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
        self.max_sequence = 0

    def apply(self, e: Event) -> None:
        a = e.args
        if e.name == "BatchApplied":
            self.apply_batch(a)
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

    def apply_batch(self, a: Mapping[str, Any]) -> list[str]:
        """One `BatchApplied` event's fields (by name, as decoded from its ABI): its applied
        entries, then its record. Returns the accounts whose entry changed, in batch order."""
        sequence = int(a["sequence"])
        changed = []
        for entry in applied_entries(bytes(a["entries"]), [int(w) for w in a["appliedBits"]]):
            self.entries[entry.account] = AppliedEntry(
                sequence, entry.position_nonce, entry.im_micro_usd, entry.mm_micro_usd
            )
            changed.append(entry.account)
        mask = int(a["priceAssetMask"])
        prices = [int(p) for p in a["pricesE18"]]
        assets = [i for i in range(mask.bit_length()) if mask >> i & 1]
        self.record(
            BatchRecord(
                sequence,
                int(a["issuedAt"]),
                int(a["keyEpoch"]),
                mask,
                dict(zip(assets, prices, strict=True)),
            )
        )
        return changed

    def record(self, r: BatchRecord) -> None:
        """A batch record into its ring slot, as `BatchApplied` puts it there on-chain."""
        _place(self.ring, r)
        self.max_sequence = max(self.max_sequence, r.sequence)

    def view(
        self,
        sequences: NDArray[np.uint64],
        entry_nonces: NDArray[np.int64],
        position_nonces: NDArray[np.int64],
        market_asset_masks: NDArray[np.int64],
        prices_e18: Mapping[int, int],
        now: int,
        pending: Iterable[BatchRecord] = (),
    ) -> AttestedView:
        """The in-force rule (S1, `requirementInForce`) for many accounts at block time `now`.

        Per account: the sequence and position nonce of its applied entry (0 where none), its
        current position nonce and the mask of its markets' oracle assets. `pending` records
        are treated as already in the ring: the engine's batches in flight, so that it does not
        select their accounts again while their transaction is on its way. The band clause is
        checked in exact integers once per referenced batch, not once per account."""
        n = len(sequences)
        p = self.params
        ring = dict(self.ring)
        for record in pending:
            _place(ring, record)
        batches, of = np.unique(sequences, return_inverse=True)
        of = of.ravel()
        n_assets = max(prices_e18, default=-1) + 1
        live = np.zeros(len(batches), dtype=bool)
        issued = np.full(len(batches), np.nan)
        in_band = np.zeros(len(batches), dtype=np.int64)  # assets whose price is in the band
        gaps = np.full((len(batches), n_assets), np.inf)
        for k, sequence in enumerate(batches.tolist()):
            r = ring.get(sequence % RING_SIZE)
            if p is None or sequence == 0 or r is None or r.sequence != sequence:
                continue
            issued[k] = r.issued_at
            live[k] = r.key_epoch == self.key_epoch and 0 <= now - r.issued_at <= p.max_age_s
            for asset, attested in r.prices_e18.items():
                current = prices_e18.get(asset)
                if current is None or current <= 0:
                    continue
                distance = abs(attested - current) * BPS
                if distance <= current * p.price_band_bps:
                    in_band[k] |= 1 << asset
                gaps[k, asset] = distance / current
        masks = np.asarray(market_asset_masks, dtype=np.int64)
        in_force = (
            (np.asarray(sequences) > 0)
            & (np.asarray(entry_nonces) == np.asarray(position_nonces))
            & live[of]
            & (masks & ~in_band[of] == 0)
        )
        held = (masks[:, None] >> np.arange(n_assets)) & 1 == 1
        gap = np.where(held, gaps[of], 0.0).max(axis=1) if n_assets else np.zeros(n)
        return AttestedView(in_force, np.asarray(now - issued[of], dtype=np.float64), gap)

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
        """`AttestationVerifier.requirementInForce` at block time `now`: `view`'s rule for
        one account, then the clamp, in the contract's integers."""
        e = self.entries.get(account)
        p = self.params
        if e is None or p is None:
            return InForce(False, static_im_wad, static_mm_wad)
        v = self.view(
            np.array([e.sequence], dtype=np.uint64),
            np.array([e.position_nonce], dtype=np.int64),
            np.array([position_nonce], dtype=np.int64),
            np.array([market_asset_mask], dtype=np.int64),
            prices_e18,
            now,
        )
        if not v.in_force[0]:
            return InForce(False, static_im_wad, static_mm_wad)
        im = clamp(e.im_micro_usd * MICRO_USD_IN_WAD, static_im_wad, p)
        mm = clamp(e.mm_micro_usd * MICRO_USD_IN_WAD, static_mm_wad, p)
        return InForce(True, im, min(mm, im))


def clamp(attested_wad: int, static_wad: int, p: VerifierParams) -> int:
    """Within [floorBps, capBps] of the static value; the floor rounds up, the cap down (B12)."""
    floor = -((-static_wad * p.floor_bps) // BPS)
    cap = static_wad * p.cap_bps // BPS
    return min(max(attested_wad, floor), cap)


def _place(ring: dict[int, BatchRecord], r: BatchRecord) -> None:
    slot = r.sequence % RING_SIZE
    current = ring.get(slot)
    # An older batch never evicts a newer record; the same sequence is the same batch.
    if current is None or current.sequence < r.sequence:
        ring[slot] = r
