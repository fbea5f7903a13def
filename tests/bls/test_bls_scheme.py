"""The Python BLS scheme on both backends: py-ecc (reference) and arkworks (native) must give the
same bytes and the same verdicts; proofs of possession stop rogue keys (THREATS G05)."""

from __future__ import annotations

import pytest

from offchain.committee import bls, eip2537
from offchain.committee.backends import BACKENDS, CURVE_ORDER, NATIVE, REFERENCE, Backend

MESSAGE = bytes(range(32))
KEYS = bls.dev_secret_keys(3)


def test_backends__same_keys_signatures_and_proofs() -> None:
    sk = KEYS[0]
    assert sk.public_key(REFERENCE) == sk.public_key(NATIVE)
    assert sk.sign(MESSAGE, REFERENCE) == sk.sign(MESSAGE, NATIVE)
    assert sk.prove_possession(REFERENCE) == sk.prove_possession(NATIVE)
    for dst in (
        bls.SIGNATURE_DST,
        bls.POP_DST,
        b"QUUX-V01-CS02-with-BLS12381G1_XMD:SHA-256_SSWU_RO_",
    ):
        for message in (b"", b"abc", MESSAGE, bytes(300)):
            assert REFERENCE.hash_to_g1(message, dst) == NATIVE.hash_to_g1(message, dst)


def test_backends__same_aggregates() -> None:
    sigs = [k.sign(MESSAGE) for k in KEYS]
    keys = [k.public_key() for k in KEYS]
    assert REFERENCE.g1_sum(sigs) == NATIVE.g1_sum(sigs)
    assert REFERENCE.g2_sum(keys) == NATIVE.g2_sum(keys)


def test_hash_to_g1__rfc9380_vector() -> None:
    # RFC 9380 appendix J.9.1 (BLS12381G1_XMD:SHA-256_SSWU_RO_), msg "abc": x coordinate.
    dst = b"QUUX-V01-CS02-with-BLS12381G1_XMD:SHA-256_SSWU_RO_"
    x = int.from_bytes(NATIVE.hash_to_g1(b"abc", dst)[:64], "big")
    assert x == int(
        "03567bc5ef9c690c2ab2ecdf6a96ef1c139cc0b2f284dca0a9a7943388a49a3a"
        "ee664ba5379a7655d3c68900be2f6903",
        16,
    )


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda b: b.name)
def test_verify__right_and_wrong(backend: Backend) -> None:
    sk, other = KEYS[0], KEYS[1]
    sig = sk.sign(MESSAGE, backend)
    assert bls.verify(sk.public_key(backend), MESSAGE, sig, backend)
    assert not bls.verify(sk.public_key(backend), MESSAGE[::-1], sig, backend)
    assert not bls.verify(other.public_key(backend), MESSAGE, sig, backend)
    # The identity key would verify the identity signature on any message.
    assert not bls.verify(bytes(eip2537.G2_BYTES), MESSAGE, bytes(eip2537.G1_BYTES), backend)


def test_verify_aggregate__all_signers_and_only_them() -> None:
    keys = [k.public_key() for k in KEYS]
    agg = bls.aggregate_signatures([k.sign(MESSAGE) for k in KEYS])
    assert bls.verify_aggregate(keys, MESSAGE, agg)
    assert not bls.verify_aggregate(keys[:2], MESSAGE, agg)


def test_proof_of_possession__domain_separated_from_signatures() -> None:
    sk = KEYS[0]
    pk = sk.public_key()
    assert bls.verify_possession(pk, sk.prove_possession())
    # A signature over the key's bytes is not a proof, and a proof is not a signature.
    assert not bls.verify_possession(pk, sk.sign(pk))
    assert not bls.verify(pk, pk, sk.prove_possession())
    assert not bls.verify_possession(KEYS[1].public_key(), sk.prove_possession())


def test_rogue_key__forges_a_naive_aggregate__but_has_no_proof_of_possession() -> None:
    """G05: pk' = a·g2 − pk_honest makes pk_honest + pk' = a·g2, so the attacker alone signs for
    both; without a proof of possession for pk' the aggregate check would accept it."""
    honest, attacker = KEYS[0], KEYS[1]
    neg_honest = NATIVE.g2_generator_mul(CURVE_ORDER - honest.value)
    rogue = NATIVE.g2_sum([attacker.public_key(), neg_honest])
    forged = attacker.sign(MESSAGE)
    assert bls.verify_aggregate([honest.public_key(), rogue], MESSAGE, forged)  # the attack
    # The attacker cannot prove possession of pk': it does not know its secret.
    assert not bls.verify_possession(rogue, attacker.prove_possession())
    assert not bls.verify_possession(
        rogue, NATIVE.g1_mul(NATIVE.hash_to_g1(rogue, bls.POP_DST), attacker.value)
    )


def test_secret_key__refuses_zero_and_short_seeds() -> None:
    with pytest.raises(ValueError, match="non-zero"):
        bls.SecretKey(0)
    with pytest.raises(ValueError, match="32 bytes"):
        bls.SecretKey.from_seed(b"short")
    assert "value" not in repr(KEYS[0]).split("(")[1]
