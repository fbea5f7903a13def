"""Which accounts to attest now: a pure, vectorised selection over every mirrored account.

The engine recomputes every account on every tick, but gas (not compute) is the ceiling, so only
accounts whose on-chain requirement would actually change are attested. For each account the
policy compares what the contract enforces *now* (the attested requirement while S1 holds, else
the static one, always clamped as the verifier clamps it) with what it would enforce after a fresh
attestation, and selects the account when:

* **deviation**: the fresh requirement (IM or MM) differs from the one in force by more than
  `threshold_bps` of it AND by more than `min_change_usd` (relative for large accounts, absolute
  so dust never costs gas); accounts whose health is near 1 use a tighter relative threshold,
  since a few percent of MM decides whether they can be liquidated;
* **refresh**: the attestation in force is about to lapse (its age is within `refresh_window_s`
  of maxAge, or a price it was computed from has drifted past `band_headroom` of the verifier's
  price band) and letting it lapse to static would itself be a deviation.

Selected accounts are ordered by health (equity / the larger of the MM in force and the fresh
MM) ascending, so accounts closest to liquidation go first, and cut to `max_accounts` per tick
(the rest wait for the next tick: B14, the batch size is bounded).

numpy only; no I/O, no chain types. `tests/test_engine.py` covers each rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]

# Reason flags (bit mask per selected account).
DEVIATION = 1
REFRESH = 2
NEAR_HEALTH = 4


@dataclass(frozen=True)
class PolicyConfig:
    """Selection thresholds and the verifier parameters they mirror.

    `floor_bps`, `cap_bps`, `max_age_s` and `band_bps` must equal the verifier's `params()`; the
    engine reads them from chain at start.
    """

    threshold_bps: float = 500.0
    min_change_usd: float = 1.0
    refresh_window_s: float = 60.0
    band_headroom: float = 0.8
    near_health: float = 1.25
    near_threshold_factor: float = 0.25
    max_accounts: int = 500
    floor_bps: int = 5_000
    cap_bps: int = 50_000
    max_age_s: float = 300.0
    band_bps: float = 100.0

    def __post_init__(self) -> None:
        if not (self.threshold_bps >= 0 and self.min_change_usd >= 0):
            raise ValueError("threshold_bps and min_change_usd must be >= 0")
        if not 0 <= self.refresh_window_s < self.max_age_s:
            raise ValueError("refresh_window_s must be in [0, max_age_s)")
        if not 0 < self.band_headroom <= 1:
            raise ValueError("band_headroom must be in (0, 1]")
        if self.max_accounts < 1:
            raise ValueError("max_accounts must be >= 1")


@dataclass(frozen=True)
class PolicyInputs:
    """One entry per mirrored account, all arrays of the same length.

    `attested_live`: the account's attestation is in force now, every S1 clause checked by the
    one rule (`offchain.chain.attestations.AttestationMirror.view`).
    `attested_age_s`: now − its issuedAt (anything where not live).
    `attested_gap_bps`: the largest gap, over the account's market assets, between the price the
    attestation was computed from and the current price (inf where unknown).
    `eligible`: the account has positions, is not the backstop, and every price it needs is
    accepted by the sanitiser now (fail closed: no price, no attestation).
    """

    fresh_im_usd: FloatArray
    fresh_mm_usd: FloatArray
    static_im_usd: FloatArray
    static_mm_usd: FloatArray
    attested_im_usd: FloatArray
    attested_mm_usd: FloatArray
    attested_live: BoolArray
    attested_age_s: FloatArray
    attested_gap_bps: FloatArray
    equity_usd: FloatArray
    eligible: BoolArray

    def __post_init__(self) -> None:
        n = self.fresh_im_usd.shape
        for name, value in vars(self).items():
            if value.shape != n:
                raise ValueError(f"PolicyInputs.{name} has shape {value.shape}, expected {n}")


@dataclass(frozen=True)
class Selection:
    """Accounts to attest now, most urgent first, with why; `deferred` were cut by the bound."""

    indices: IntArray
    reasons: NDArray[np.uint8]
    deferred: int
    in_force_im_usd: FloatArray
    in_force_mm_usd: FloatArray
    health: FloatArray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def clamp(attested_usd: FloatArray, static_usd: FloatArray, cfg: PolicyConfig) -> FloatArray:
    """The verifier's clamp: attested values held within [floor, cap] of the static ones (B12)."""
    lo = static_usd * (cfg.floor_bps / 1e4)
    hi = static_usd * (cfg.cap_bps / 1e4)
    return np.asarray(np.minimum(np.maximum(attested_usd, lo), hi), dtype=np.float64)


def in_force(inputs: PolicyInputs, cfg: PolicyConfig) -> tuple[FloatArray, FloatArray, BoolArray]:
    """(IM, MM, attested?) the contract enforces now (S1/S2): the attested values, clamped,
    where the attestation is in force; the static ones otherwise."""
    live = inputs.attested_live
    im = np.where(
        live, clamp(inputs.attested_im_usd, inputs.static_im_usd, cfg), inputs.static_im_usd
    )
    mm = np.where(
        live, clamp(inputs.attested_mm_usd, inputs.static_mm_usd, cfg), inputs.static_mm_usd
    )
    return im, np.minimum(mm, im), live


def _deviates(
    new_usd: FloatArray, old_usd: FloatArray, rel_bps: FloatArray, cfg: PolicyConfig
) -> BoolArray:
    change = np.abs(new_usd - old_usd)
    return np.asarray(
        (change > np.abs(old_usd) * rel_bps / 1e4) & (change > cfg.min_change_usd), dtype=bool
    )


def select(inputs: PolicyInputs, cfg: PolicyConfig) -> Selection:
    """The accounts to attest now (see the module docstring for the rules)."""
    im_now, mm_now, live = in_force(inputs, cfg)
    im_new = clamp(inputs.fresh_im_usd, inputs.static_im_usd, cfg)
    mm_new = np.minimum(clamp(inputs.fresh_mm_usd, inputs.static_mm_usd, cfg), im_new)

    worst_mm = np.maximum(mm_now, mm_new)
    with np.errstate(divide="ignore", invalid="ignore"):
        health = np.where(worst_mm > 0, inputs.equity_usd / worst_mm, np.inf)
    near = health < cfg.near_health
    rel_bps = np.where(near, cfg.threshold_bps * cfg.near_threshold_factor, cfg.threshold_bps)

    deviation = _deviates(mm_new, mm_now, rel_bps, cfg) | _deviates(im_new, im_now, rel_bps, cfg)
    lapsing = live & (
        (inputs.attested_age_s > cfg.max_age_s - cfg.refresh_window_s)
        | (inputs.attested_gap_bps > cfg.band_bps * cfg.band_headroom)
    )
    static_im, static_mm = inputs.static_im_usd, inputs.static_mm_usd
    differs_from_static = _deviates(mm_new, static_mm, rel_bps, cfg) | _deviates(
        im_new, static_im, rel_bps, cfg
    )
    refresh = lapsing & differs_from_static

    wanted = inputs.eligible & (deviation | refresh)
    candidates = np.flatnonzero(wanted)
    # Stable sort: equal health keeps mirror order, so a tick's selection is deterministic.
    order = candidates[np.argsort(health[candidates], kind="stable")]
    chosen = order[: cfg.max_accounts].astype(np.intp)
    reasons = (
        np.where(deviation[chosen], DEVIATION, 0)
        | np.where(refresh[chosen], REFRESH, 0)
        | np.where(near[chosen], NEAR_HEALTH, 0)
    ).astype(np.uint8)
    return Selection(
        indices=chosen,
        reasons=reasons,
        deferred=int(order.shape[0] - chosen.shape[0]),
        in_force_im_usd=im_now,
        in_force_mm_usd=mm_now,
        health=health,
    )


def describe(reasons: int) -> str:
    """'deviation+refresh' etc., for logs."""
    names = [
        n
        for bit, n in ((DEVIATION, "deviation"), (REFRESH, "refresh"), (NEAR_HEALTH, "near"))
        if reasons & bit
    ]
    return "+".join(names) or "none"


def needs_proof(inputs: PolicyInputs, fresh_mm_usd: FloatArray, cfg: PolicyConfig) -> BoolArray:
    """Accounts a fresh attestation would make liquidatable while statically healthy: its MM
    (clamped as the verifier clamps it) above both equity and the static MM, equity at or above
    the static MM. Exactly those the proof gate (SPEC I34) holds back until a proof lands, so
    the engine's prove mode proves them and nobody else."""
    mm = clamp(fresh_mm_usd, inputs.static_mm_usd, cfg)
    equity, static = inputs.equity_usd, inputs.static_mm_usd
    return np.asarray((mm > static) & (equity < mm) & (equity >= static), dtype=bool)
