"""Poseidon over BN254 exactly as circomlib's `Poseidon(n)` template computes it.

The round constants and matrices are read from circomlib's own `poseidon_constants.circom` (the
file the circuit is compiled with, from npm), so the model hash here and in the circuit come from
one table. The permutation follows the template's optimised schedule (sparse partial rounds with
the S and P matrices); its output equals the reference permutation's.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from offchain.errors import ToolchainError
from offchain.settings import PROJECT_ROOT

FIELD_MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617
CONSTANTS_FILE = (
    PROJECT_ROOT / "node_modules" / "circomlib" / "circuits" / "poseidon_constants.circom"
)
FULL_ROUNDS = 8
# circomlib's partial rounds for t = 2 … 17.
PARTIAL_ROUNDS = (56, 57, 56, 60, 60, 63, 64, 63, 60, 66, 60, 65, 70, 60, 64, 68)


def _branch(text: str, function: str, t: int) -> list[int]:
    """The hex constants of `function(t)`'s branch for this t, in file order."""
    start = text.index(f"function {function}(t)")
    end = text.index("\nfunction ", start + 1) if "\nfunction " in text[start + 1 :] else len(text)
    body = text[start:end]
    match = re.search(rf"if \(t\s*==\s*{t}\)\s*\{{(.*?)\n    \}}", body, re.S)
    if match is None:
        raise ToolchainError(f"{CONSTANTS_FILE} has no {function} for t={t}", "reinstall circomlib")
    return [int(h, 16) for h in re.findall(r"0x[0-9a-fA-F]+", match.group(1))]


@cache
def _constants(
    t: int, path: Path = CONSTANTS_FILE
) -> tuple[list[int], list[int], list[list[int]], list[list[int]]]:
    if not path.exists():
        raise ToolchainError(
            f"circomlib's Poseidon constants not found at {path}", "run `make install`"
        )
    text = path.read_text()
    c = _branch(text, "POSEIDON_C", t)
    s = _branch(text, "POSEIDON_S", t)
    m_flat = _branch(text, "POSEIDON_M", t)
    p_flat = _branch(text, "POSEIDON_P", t)
    m = [m_flat[i * t : (i + 1) * t] for i in range(t)]
    p = [p_flat[i * t : (i + 1) * t] for i in range(t)]
    return c, s, m, p


def _mix(state: list[int], matrix: list[list[int]]) -> list[int]:
    t = len(state)
    return [sum(matrix[j][i] * state[j] for j in range(t)) % FIELD_MODULUS for i in range(t)]


def _sbox(x: int) -> int:
    return pow(x, 5, FIELD_MODULUS)


def poseidon(inputs: list[int]) -> int:
    """circomlib's Poseidon(len(inputs)) of field elements (each must be below the modulus)."""
    if not 1 <= len(inputs) <= len(PARTIAL_ROUNDS):
        raise ValueError(f"Poseidon takes 1 to {len(PARTIAL_ROUNDS)} inputs, got {len(inputs)}")
    if any(not 0 <= x < FIELD_MODULUS for x in inputs):
        raise ValueError("Poseidon inputs must be field elements")
    t = len(inputs) + 1
    c, s, m, p = _constants(t)
    half = FULL_ROUNDS // 2
    partial = PARTIAL_ROUNDS[t - 2]
    state = [(x + c[i]) % FIELD_MODULUS for i, x in enumerate([0, *inputs])]
    for r in range(half - 1):
        state = [_sbox(x) for x in state]
        state = [(x + c[(r + 1) * t + i]) % FIELD_MODULUS for i, x in enumerate(state)]
        state = _mix(state, m)
    state = [_sbox(x) for x in state]
    state = [(x + c[half * t + i]) % FIELD_MODULUS for i, x in enumerate(state)]
    state = _mix(state, p)
    for r in range(partial):
        state[0] = (_sbox(state[0]) + c[(half + 1) * t + r]) % FIELD_MODULUS
        row = s[(2 * t - 1) * r : (2 * t - 1) * (r + 1)]
        first = sum(row[j] * state[j] for j in range(t)) % FIELD_MODULUS
        state = [first] + [
            (state[i] + state[0] * row[t + i - 1]) % FIELD_MODULUS for i in range(1, t)
        ]
    for r in range(half - 1):
        state = [_sbox(x) for x in state]
        base = (half + 1) * t + partial + r * t
        state = [(x + c[base + i]) % FIELD_MODULUS for i, x in enumerate(state)]
        state = _mix(state, m)
    state = [_sbox(x) for x in state]
    return sum(m[j][0] * state[j] for j in range(t)) % FIELD_MODULUS
