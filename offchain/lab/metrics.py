"""The figures of one generation's run, with their definitions (also in docs/lab.md).

All money is USD. "Traders" excludes the market maker, the keeper and the insurance fund.

* `bad_debt`: what insolvent traders left unpaid. For each insolvency the system booked
  (`InsolvencyResolved`: the negative cash `debtWad` moves to the insurance fund, which covers it
  or books the rest as `deficitWad`), the debt less the market value of the collateral the fund
  seized with it (`CollateralSeized.valueWad`), floored at 0; plus latent bad debt: Σ max(0,
  −equity) over traders at the end of the path, collateral at market value (under water but not
  yet resolved, e.g. because a slow keeper never reached them). `bad_debt_detail` also gives the
  gross debt absorbed, what the fund covered, the seized collateral, and `deficit`: the protocol's
  `deficitWad` at the end, booked at insolvencies (`deficit_at_resolution`) and by the backstop
  when the fund's own equity went below zero (`DeficitBooked`, SPEC I25).
* `liquidations`: `Liquidate` events (one per account and market per keeper call, partial or
  full). `liquidated_accounts`: distinct traders liquidated at least once.
* `liquidated_notional`: Σ closed size × oracle price over those events.
* `unnecessary_liquidations`: liquidated traders whose opening positions, held untouched along the
  whole path, would never have had negative equity (equity ≥ 0 at every update and at the end):
  they would have ended solvent had they been left alone.
* `im_to_notional_mean` / `_median`: initial margin in force ÷ gross notional, over every
  (update, trader with positions) pair after each update's actions. For Gen 1/2 this is the
  static rate; for Gen 3 the attested value while S1 holds, the static one otherwise.
* `sync_lag_ms` {p50, p99}: per price update, the time until the protocol acts on it. Gen 3: from
  the tick to the receipt of the attestation batch that reflects it (to the engine's decision
  when no account needed an update), plus any updates waited when the engine posts only every n-th
  update. Gen 1/2: by construction the updates waited until the keeper's next check (× the update
  interval) plus the measured time from the price receipt to the check. `keeper_lag_ms` gives
  the latter for every generation.
* `gas` {engine, keepers}: Σ gas of attestation submissions; Σ gas of liquidations. Oracle
  updates, backstop operations and opening trades are under `gas_detail`.
* `funding` {paid, received, liquidations_from_funding}: Σ of the positive `FundingSettled`
  amounts (funding paid) and of the negative ones, negated (received), over every account,
  after the lab settles every open position's funding in one block at the end, so paid ≥
  received, the difference being the protocol's rounding dust (I26); and the liquidations of
  accounts that had paid funding since they opened and would have been at or above their MM
  without it (equity before the liquidation + funding paid, settled and due, ≥ MM in force).
* `insurance_fund_end`: the insurance fund's equity at the end (cash, absorbed positions and
  seized collateral at the final oracle prices).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from offchain.lab.runner import GenerationRun
from offchain.models import WAD


def next_check_lag_ms(
    update: int, every: int, steps: int, interval_s: float, wall_ms: Mapping[int, float]
) -> float:
    """Time from price update `update` until the next check that acts on it: whole updates
    waited (scenario time) plus the measured wall time of that check. A check past the end of
    the path never measured anything, so it takes the median of the measured ones."""
    check = math.ceil(update / every) * every
    waited_ms = (check - update) * interval_s * 1000.0
    if check in wall_ms:
        return waited_ms + wall_ms[check]
    measured = list(wall_ms.values())
    return waited_ms + (float(np.median(measured)) if measured else 0.0)


def _usd(x_wad: int) -> float:
    return round(x_wad / WAD, 2)


def _pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p99": 0.0}
    return {
        "p50": round(float(np.percentile(values, 50)), 1),
        "p99": round(float(np.percentile(values, 99)), 1),
    }


def generation_metrics(run: GenerationRun) -> dict[str, Any]:
    g = run.generation
    steps = len(run.times_s) - 1
    debt_wad = sum(i.debt_wad for i in run.insolvencies)
    covered_wad = sum(i.covered_wad for i in run.insolvencies)
    deficit_wad = sum(i.deficit_wad for i in run.insolvencies)
    seized_wad = sum(i.seized_value_wad for i in run.insolvencies)
    unpaid_wad = sum(max(0, i.debt_wad - i.seized_value_wad) for i in run.insolvencies)
    latent = float(np.maximum(-run.market_equity_end_usd, 0.0).sum())
    liquidated = sorted({liq.account for liq in run.liquidations})
    column = {a: i for i, a in enumerate(run.traders)}
    never_negative = (run.hold_equity_usd >= 0.0).all(axis=0)
    unnecessary = [a for a in liquidated if never_negative[column[a]]]

    im, notional = run.im_usd[1:], run.notional_usd[1:]
    open_positions = notional > 0.0
    ratio = im[open_positions] / notional[open_positions]

    keeper_lag = [
        next_check_lag_ms(k, g.keeper_every, steps, run.interval_s, run.keeper_wall_ms)
        for k in range(1, steps + 1)
    ]
    if g.attested:
        posted = {k: s.lag_ms for k, s in run.sync.items()}
        sync_lag = [
            next_check_lag_ms(k, g.attest_every, steps, run.interval_s, posted)
            for k in range(1, steps + 1)
        ]
    else:
        sync_lag = keeper_lag
    gas_sum = {k: int(sum(v)) for k, v in sorted(run.gas.items())}
    updated = [s.accounts_updated for s in run.sync.values()]
    from_funding = [
        liq
        for liq in run.liquidations
        if liq.funding_paid_wad > 0
        and liq.equity_before_wad + liq.funding_paid_wad >= liq.mm_before_wad
    ]

    return {
        "label": g.label,
        "rules": g.rules,
        "keeper_every": g.keeper_every,
        "attest_every": g.attest_every if g.attested else None,
        "bad_debt": round(_usd(unpaid_wad) + latent, 2),
        "bad_debt_detail": {
            "unpaid_at_resolution": _usd(unpaid_wad),
            "latent_at_end": round(latent, 2),
            "debt_absorbed": _usd(debt_wad),
            "collateral_seized_value": _usd(seized_wad),
            "covered_by_insurance": _usd(covered_wad),
            "deficit": _usd(run.deficit_wad),
            "deficit_at_resolution": _usd(deficit_wad),
            "insolvent_accounts": len(run.insolvencies),
        },
        "liquidations": len(run.liquidations),
        "liquidated_accounts": len(liquidated),
        "liquidated_notional": round(
            sum(liq.closed_size_wad * liq.price_e18 for liq in run.liquidations) / WAD**2, 2
        ),
        "unnecessary_liquidations": len(unnecessary),
        "im_to_notional_mean": round(float(ratio.mean()), 6) if ratio.size else 0.0,
        "im_to_notional_median": round(float(np.median(ratio)), 6) if ratio.size else 0.0,
        "sync_lag_ms": _pct(sync_lag),
        "keeper_lag_ms": _pct(keeper_lag),
        "gas": {"engine": gas_sum.get("engine_submit", 0), "keepers": gas_sum.get("liquidate", 0)},
        "gas_detail": gas_sum,
        "attestations": {
            "batches": sum(s.batches for s in run.sync.values()),
            "accounts_updated": int(sum(updated)),
            "accounts_updated_per_update_mean": round(float(np.mean(updated)), 1)
            if updated
            else 0.0,
        },
        "funding": {
            "paid": _usd(run.funding_paid_wad),
            "received": _usd(run.funding_received_wad),
            "liquidations_from_funding": len(from_funding),
        },
        "insurance_fund_start": _usd(run.insurance_fund_start_wad),
        "insurance_fund_end": _usd(run.insurance_fund_end_wad),
        "insurance_fund_pnl": _usd(run.insurance_fund_end_wad - run.insurance_fund_start_wad),
        "checks": {
            "onchain_liquidate_events": run.onchain_liquidate_events,
            "onchain_deficit": _usd(run.onchain_deficit_wad),
            "health_mismatches": run.health_mismatches,
        },
    }


def margin_ratio_bands(run: GenerationRun) -> dict[str, list[float]]:
    """Per point: percentiles of equity ÷ MM in force over traders with positions, and the share
    of them below 1 (liquidatable). NaN where nobody holds a position."""
    out: dict[str, list[float]] = {k: [] for k in ("p10", "p25", "p50", "p75", "p90", "below")}
    for equity, mm in zip(run.equity_usd, run.mm_usd, strict=True):
        open_positions = mm > 0.0
        if not open_positions.any():
            for values in out.values():
                values.append(float("nan"))
            continue
        ratio = equity[open_positions] / mm[open_positions]
        for q in (10, 25, 50, 75, 90):
            out[f"p{q}"].append(float(np.percentile(ratio, q)))
        out["below"].append(float((ratio < 1.0).mean()))
    return out
