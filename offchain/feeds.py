"""Simulated oracle price paths (pure numpy, seeded): a random walk and crash templates.

`marginsync feed` and the demo push these paths to the deployed mock Chainlink feeds.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

# Peak-to-trough moves from REFERENCES.md: ETH on 2020-03-12 fell ≈ 43% in a day.
CRASH_DROPS = {"2020-03-12": 0.43, "2022-11": 0.25, "2025-10-10": 0.30}


def random_walk(
    start_usd: float, steps: int, *, vol_per_step: float = 0.01, drift_per_step: float = 0.0, seed: int = 0
) -> NDArray[np.float64]:
    """Geometric Brownian motion: `steps` prices after `start_usd` (which is not included)."""
    if start_usd <= 0 or steps < 1 or vol_per_step < 0:
        raise ValueError("random_walk needs start_usd > 0, steps ≥ 1 and vol_per_step ≥ 0")
    rng = np.random.default_rng(seed)
    shocks = rng.standard_normal(steps) * vol_per_step + drift_per_step - 0.5 * vol_per_step**2
    return start_usd * np.exp(np.cumsum(shocks))


def crash(
    start_usd: float,
    steps: int,
    *,
    drop: float = CRASH_DROPS["2020-03-12"],
    shape: Literal["linear", "front"] = "front",
    noise: float = 0.003,
    seed: int = 0,
) -> NDArray[np.float64]:
    """A fall of `drop` (0.43 = −43%) over `steps` prices, ending exactly at the trough.

    `front` loads the fall early (most of a crash day's move came in hours), `linear` spreads it.
    """
    if not 0 < drop < 1 or steps < 1 or start_usd <= 0:
        raise ValueError("crash needs 0 < drop < 1, steps ≥ 1 and start_usd > 0")
    t = np.arange(1, steps + 1) / steps
    progress = np.sqrt(t) if shape == "front" else t
    log_path = np.log1p(-drop) * progress
    rng = np.random.default_rng(seed)
    log_path[:-1] += rng.standard_normal(steps - 1) * noise
    return start_usd * np.exp(log_path)
