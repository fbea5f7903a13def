"""Groth16 verification in pure Python (py-ecc), the off-chain twin of Groth16Verifier.sol (P4).

It takes the proof in the contract's layout (A.x, A.y, B.x.c1, B.x.c0, B.y.c1, B.y.c0, C.x, C.y)
and refuses exactly what the contract refuses, so a keeper or an auditor can check a proof before
acting on it. One check costs four Miller loops and one final exponentiation (≈ 1 s).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from py_ecc.optimized_bn128 import (
    FQ12,
    add,
    curve_order,
    final_exponentiate,
    multiply,
    neg,
    pairing,
)

from offchain.prove.bn254 import (
    G1Point,
    G2Point,
    InvalidPoint,
    g1_from_words,
    g1_to_words,
    g2_from_words,
    g2_to_words,
)


@dataclass(frozen=True)
class VerifyingKey:
    alpha1: G1Point
    beta2: G2Point
    gamma2: G2Point
    delta2: G2Point
    ic: tuple[G1Point, ...]

    @classmethod
    def load(cls, path: Path) -> VerifyingKey:
        """From snarkjs's verification key JSON (coordinates as decimal strings, (c0, c1))."""
        data: dict[str, Any] = json.loads(path.read_text())

        def g1(p: list[str]) -> G1Point:
            return g1_from_words(int(p[0]), int(p[1]))

        def g2(p: list[list[str]]) -> G2Point:
            return g2_from_words(int(p[0][1]), int(p[0][0]), int(p[1][1]), int(p[1][0]))

        return cls(
            alpha1=g1(data["vk_alpha_1"]),
            beta2=g2(data["vk_beta_2"]),
            gamma2=g2(data["vk_gamma_2"]),
            delta2=g2(data["vk_delta_2"]),
            ic=tuple(g1(p) for p in data["IC"]),
        )

    @property
    def public_inputs(self) -> int:
        return len(self.ic) - 1

    def contract_args(self) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
        """The Groth16Verifier constructor's VerifyingKey, EIP-197 layout."""
        return (
            list(g1_to_words(self.alpha1)),
            list(g2_to_words(self.beta2)),
            list(g2_to_words(self.gamma2)),
            list(g2_to_words(self.delta2)),
            [w for p in self.ic for w in g1_to_words(p)],
        )


def verify(vk: VerifyingKey, proof: Sequence[int], public: Sequence[int]) -> bool:
    """Whether `proof` proves the circuit's statement for `public`; False for anything malformed."""
    if len(proof) != 8 or len(public) != vk.public_inputs:
        return False
    if any(not 0 <= x < curve_order for x in public):
        return False
    try:
        a = g1_from_words(proof[0], proof[1])
        b = g2_from_words(proof[2], proof[3], proof[4], proof[5])
        c = g1_from_words(proof[6], proof[7])
    except InvalidPoint:
        return False
    vk_x = vk.ic[0]
    for x, point in zip(public, vk.ic[1:], strict=True):
        vk_x = add(vk_x, multiply(point, x))
    # e(−A, B) · e(α, β) · e(vk_x, γ) · e(C, δ) = 1, with one shared final exponentiation.
    product = FQ12.one()
    for g2, g1 in ((b, neg(a)), (vk.beta2, vk.alpha1), (vk.gamma2, vk_x), (vk.delta2, c)):
        product = product * pairing(g2, g1, final_exponentiate=False)
    return bool(final_exponentiate(product) == FQ12.one())
