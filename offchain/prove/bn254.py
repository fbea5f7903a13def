"""BN254 points between py-ecc and the EIP-196/197 precompiles' byte layout, in one place.

A G1 point is (x, y); a G2 point is (x.c1, x.c0, y.c1, y.c0): EIP-197 puts the imaginary part
first, where py-ecc (and snarkjs's JSON) hold (c0, c1). (0, 0) is the point at infinity. Decoding
refuses what the precompiles refuse: a coordinate ≥ Q, a point off the curve, a G2 point outside
the prime-order subgroup (contracts/libraries/Bn254.sol is the Solidity side).
"""

from __future__ import annotations

from py_ecc.optimized_bn128 import (
    FQ,
    FQ2,
    Z1,
    Z2,
    b,
    b2,
    curve_order,
    field_modulus,
    is_inf,
    is_on_curve,
    multiply,
    normalize,
)
from py_ecc.typing import Optimized_Point3D

G1Point = Optimized_Point3D[FQ]
G2Point = Optimized_Point3D[FQ2]


class InvalidPoint(ValueError):
    """Bytes that are no point of the group (the precompile would fail on them)."""


def g1_from_words(x: int, y: int) -> G1Point:
    if x >= field_modulus or y >= field_modulus:
        raise InvalidPoint("G1 coordinate not below the field modulus")
    if x == 0 and y == 0:
        return Z1
    point = (FQ(x), FQ(y), FQ(1))
    if not is_on_curve(point, b):
        raise InvalidPoint("G1 point not on the curve")
    return point


def g2_from_words(x1: int, x0: int, y1: int, y0: int) -> G2Point:
    if any(c >= field_modulus for c in (x1, x0, y1, y0)):
        raise InvalidPoint("G2 coordinate not below the field modulus")
    if x1 == x0 == y1 == y0 == 0:
        return Z2
    point = (FQ2([x0, x1]), FQ2([y0, y1]), FQ2([1, 0]))
    if not is_on_curve(point, b2):
        raise InvalidPoint("G2 point not on the twist")
    if not is_inf(multiply(point, curve_order)):
        raise InvalidPoint("G2 point outside the prime-order subgroup")
    return point


def g1_to_words(point: G1Point) -> tuple[int, int]:
    if is_inf(point):
        return (0, 0)
    x, y = normalize(point)
    return (int(x), int(y))


def g2_to_words(point: G2Point) -> tuple[int, int, int, int]:
    if is_inf(point):
        return (0, 0, 0, 0)
    x, y = normalize(point)
    return (int(x.coeffs[1]), int(x.coeffs[0]), int(y.coeffs[1]), int(y.coeffs[0]))
