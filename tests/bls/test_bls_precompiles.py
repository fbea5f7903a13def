"""The BLS12381 library and the EIP-2537 precompiles against the Python implementation, both
ways: Python's bytes fed to the precompiles and the precompiles' bytes decoded by Python. Same
hash, same pairing verdict, and every encoding quirk refused on both sides."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from helpers import assert_revert
from py_ecc.bls.hash import expand_message_xmd
from py_ecc.bls.point_compression import modular_squareroot_in_FQ2
from py_ecc.fields import optimized_bls12_381_FQ2 as FQ2
from web3.contract import Contract

from offchain.chain import Chain
from offchain.committee import bls, eip2537
from offchain.committee.backends import BACKENDS, NATIVE, Backend
from offchain.committee.eip2537 import EncodingError, P
from offchain.errors import ContractRevert

MESSAGES = [b"", b"abc", bytes(32), bytes(range(32)), b"\xff" * 200]
SK = bls.dev_secret_keys(1)[0]
PK = SK.public_key()
SIG = SK.sign(b"certificate")
FP = eip2537.FP_BYTES


def _revert(chain: Chain, fn: object) -> ContractRevert:
    with pytest.raises(ContractRevert) as e:
        chain.call(fn, "expected to revert")  # type: ignore[arg-type]
    return e.value


@pytest.mark.parametrize("message", MESSAGES)
def test_expand_message_xmd__same_bytes(harness: Contract, message: bytes) -> None:
    words = harness.functions.expandMessageXmd(message, bls.SIGNATURE_DST).call()
    assert b"".join(words) == expand_message_xmd(message, bls.SIGNATURE_DST, 128, hashlib.sha256)


@pytest.mark.parametrize("message", MESSAGES)
def test_hash_to_g1__same_point_both_ways(harness: Contract, message: bytes) -> None:
    for dst in (bls.SIGNATURE_DST, bls.POP_DST):
        onchain = harness.functions.hashToG1(message, dst).call()
        assert onchain == NATIVE.hash_to_g1(message, dst)
        NATIVE.check_g1(onchain)  # the precompile's output is a canonical subgroup point


def test_hash_to_g1__dst_over_255_bytes__reverts(chain: Chain, harness: Contract) -> None:
    err = _revert(chain, harness.functions.hashToG1(b"m", b"x" * 256))
    assert_revert(err, "DstTooLong", length=256)


@pytest.mark.parametrize("value", [0, 1, P - 1, P, P + 1, 2 * P + 5, 2**512 - 1])
def test_reduce_mod_p__matches_python(harness: Contract, value: int) -> None:
    raw = value.to_bytes(64, "big")
    out = harness.functions.reduceModP(raw[:32], raw[32:]).call()
    assert out == eip2537.encode_fp(value % P)


def test_map_fp_to_g1__clears_the_cofactor(harness: Contract) -> None:
    """hash_to_curve = clear_cofactor(map(u0) + map(u1)); the library adds two precompile maps,
    which is right only because the precompile clears the cofactor of each (a homomorphism)."""
    from py_ecc.bls.hash_to_curve import clear_cofactor_G1, map_to_curve_G1
    from py_ecc.fields import optimized_bls12_381_FQ as FQ
    from py_ecc.optimized_bls12_381 import normalize

    for u in (0, 1, 12345, P - 1):
        onchain = harness.functions.mapFpToG1(eip2537.encode_fp(u)).call()
        x, y = normalize(clear_cofactor_G1(map_to_curve_G1(FQ(u))))
        assert onchain == eip2537.encode_g1((int(x), int(y)))


def test_negate_g2__sums_to_infinity(harness: Contract) -> None:
    neg = harness.functions.negateG2(PK).call()
    assert harness.functions.g2Add(PK, neg).call() == bytes(eip2537.G2_BYTES)
    assert neg == NATIVE.g2_generator_mul(-SK.value)
    assert harness.functions.negateG2(bytes(256)).call() == bytes(256)  # −∞ = ∞, still canonical
    assert harness.functions.negateG2(bls.G2_GENERATOR).call() == bls.NEG_G2_GENERATOR


def test_pairing__same_verdict_as_python(harness: Contract) -> None:
    cases = [
        (SIG, b"certificate", PK, True),
        (SIG, b"another one", PK, False),
        (SIG, b"certificate", bls.dev_secret_keys(2)[1].public_key(), False),
        (bytes(128), b"certificate", PK, False),  # the identity signature
    ]
    for sig, message, key, expected in cases:
        hashed = NATIVE.hash_to_g1(message, bls.SIGNATURE_DST)
        ok, valid = harness.functions.verifyPairing(sig, hashed, key).call()
        assert ok
        assert valid == expected
        assert bls.verify(key, message, sig) == expected


# ---------------------------------------------------------------------------- encoding quirks
def _swap_fp2(point: bytes) -> bytes:
    """c1‖c0 instead of c0‖c1 in both coordinates (EIP-197's order, wrong here)."""
    out = b""
    for i in range(0, eip2537.G2_BYTES, 2 * FP):
        out += point[i + FP : i + 2 * FP] + point[i : i + FP]
    return out


def _plus_p(point: bytes) -> bytes:
    """The same point with x written as x + p: same value mod p, not canonical."""
    x = int.from_bytes(point[:FP], "big") + P
    return x.to_bytes(FP, "big") + point[FP:]


def _top_byte(point: bytes) -> bytes:
    return b"\x01" + point[1:]


def _off_curve(point: bytes) -> bytes:
    y = (int.from_bytes(point[-FP:], "big") + 1) % P
    return point[:-FP] + y.to_bytes(FP, "big")


def _g1_outside_subgroup() -> bytes:
    """A point of E(Fp) with x = 5, 6, …: on the curve, almost surely not of prime order."""
    x = 5
    while True:
        rhs = (x**3 + 4) % P
        y = pow(rhs, (P + 1) // 4, P)
        if y * y % P == rhs:
            return eip2537.encode_g1((x, y))
        x += 1


def _g2_outside_subgroup() -> bytes:
    x0 = 1
    while True:
        x = FQ2([x0, 1])
        y = modular_squareroot_in_FQ2(x**3 + FQ2([4, 4]))
        if y is not None:
            return eip2537.encode_g2(((x0, 1), (int(y.coeffs[0]), int(y.coeffs[1]))))
        x0 += 1


G1_QUIRKS: dict[str, Callable[[bytes], bytes]] = {
    "x >= p": _plus_p,
    "top 16 bytes set": _top_byte,
    "off the curve": _off_curve,
}
G2_QUIRKS: dict[str, Callable[[bytes], bytes]] = {
    **G1_QUIRKS,
    "Fp2 as c1||c0": _swap_fp2,
}


@pytest.mark.parametrize("quirk", list(G1_QUIRKS))
def test_g1_quirks__refused_by_precompile_and_python(
    chain: Chain, harness: Contract, quirk: str
) -> None:
    bad = G1_QUIRKS[quirk](SIG)
    assert_revert(_revert(chain, harness.functions.g1Add(bad, SIG)), "PrecompileFailed")
    assert_revert(_revert(chain, harness.functions.g1Add(SIG, bad)), "PrecompileFailed")
    ok, _ = harness.functions.verifyPairing(bad, SIG, PK).call()
    assert not ok
    for backend in BACKENDS:
        with pytest.raises(EncodingError):
            backend.check_g1(bad)
        assert not bls.verify(PK, b"certificate", bad, backend)


@pytest.mark.parametrize("quirk", list(G2_QUIRKS))
def test_g2_quirks__refused_by_precompile_and_python(
    chain: Chain, harness: Contract, quirk: str
) -> None:
    bad = G2_QUIRKS[quirk](PK)
    assert_revert(_revert(chain, harness.functions.g2Add(bad, PK)), "PrecompileFailed")
    assert not harness.functions.isG2Point(bad).call()
    hashed = NATIVE.hash_to_g1(b"certificate", bls.SIGNATURE_DST)
    ok, _ = harness.functions.verifyPairing(SIG, hashed, bad).call()
    assert not ok
    for backend in BACKENDS:
        with pytest.raises(EncodingError):
            backend.check_g2(bad)


def test_fp2_order__precompile_output_is_c0_c1(harness: Contract) -> None:
    """The other way round: what G2ADD returns decodes as c0‖c1 in Python, not swapped."""
    two = harness.functions.g2Add(PK, PK).call()
    assert two == NATIVE.g2_generator_mul(2 * SK.value)
    NATIVE.check_g2(two)
    with pytest.raises(EncodingError):
        NATIVE.check_g2(_swap_fp2(two))


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_outside_subgroup__additions_accept_pairings_refuse(
    harness: Contract, backend: Backend
) -> None:
    g1, g2 = _g1_outside_subgroup(), _g2_outside_subgroup()
    # G1ADD and G2ADD check the curve only, which is why keys are checked on the way in.
    harness.functions.g1Add(g1, SIG).call()
    harness.functions.g2Add(g2, PK).call()
    assert not harness.functions.isG2Point(g2).call()
    ok, _ = harness.functions.verifyPairing(g1, SIG, PK).call()
    assert not ok
    with pytest.raises(EncodingError, match="subgroup"):
        backend.check_g1(g1)
    with pytest.raises(EncodingError, match="subgroup"):
        backend.check_g2(g2)


def test_infinity__all_zeros_on_both_sides(harness: Contract) -> None:
    zero1, zero2 = bytes(eip2537.G1_BYTES), bytes(eip2537.G2_BYTES)
    assert harness.functions.g1Add(zero1, SIG).call() == SIG
    assert harness.functions.g2Add(zero2, PK).call() == PK
    assert harness.functions.isG2Point(zero2).call()
    for backend in BACKENDS:
        backend.check_g1(zero1)
        backend.check_g2(zero2)
        assert backend.g1_sum([zero1, SIG]) == SIG
    assert eip2537.decode_g1(zero1) is None
    assert eip2537.decode_g2(zero2) is None


def test_encoding__wrong_lengths_refused() -> None:
    for data, decode in ((SIG[:-1], eip2537.decode_g1), (PK + b"\x00", eip2537.decode_g2)):
        with pytest.raises(EncodingError, match="bytes"):
            decode(data)
