"""The quorum bench's crossover: the first k at which ECDSA costs more than BLS."""

from __future__ import annotations

from offchain.bench.quorum import crossover


def test_crossover__interpolates_between_measured_points() -> None:
    ks = [1, 11, 21]
    assert crossover(ks, [8_000, 88_000, 168_000], [130_000, 130_000, 130_000]) == 17
    assert crossover(ks, [8_000, 140_000, 168_000], [130_000, 130_000, 130_000]) == 11
    assert crossover(ks, [8_000, 9_000, 10_000], [130_000, 130_000, 130_000]) is None
