"""The committee's signature scheme: BLS12-381, minimal-signature-size, proofs of possession.

Signatures live in G1 (128 bytes in EIP-2537 form), public keys in G2 (256 bytes). On-chain, a
certificate costs one hash to G1 (two MAP_FP_TO_G1 at 5,500 gas and a G1ADD) and one two-pair
pairing (102,900 gas) whatever the number of signers; the signers' keys are summed in G2 from a
stored aggregate (see contracts/CommitteeRegistry.sol). Keys in G1 would make each key addition
cheaper (375 instead of 600 gas) but the hash to G2 costs two MAP_FP2_TO_G2 at 23,800 gas, more
than the additions save for any committee of up to 64.

Hash to curve is RFC 9380's BLS12381G1_XMD:SHA-256_SSWU_RO_, with our own domain separation
tags in the IETF BLS-signature naming: one for certificates, one for proofs of possession, so a
proof can never be replayed as a signature and the reverse. A key counts only with a proof of
possession (a signature over its own EIP-2537 encoding under `POP_DST`): without it, a rogue key
pk' = sk'·g2 − Σ others would let one holder sign for the whole aggregate (THREATS G05).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from py_ecc.bls import G2ProofOfPossession

from offchain.committee import eip2537
from offchain.committee.backends import CURVE_ORDER, NATIVE, Backend
from offchain.committee.eip2537 import EncodingError

SIGNATURE_DST = b"MARGINSYNC-V01-BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_"
POP_DST = b"MARGINSYNC-V01-BLS_POP_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_"

# −g2, the G2 generator negated: e(σ, −g2)·e(H(m), pk) = 1 is the verification equation.
_G2X = (
    0x024AA2B2F08F0A91260805272DC51051C6E47AD4FA403B02B4510B647AE3D1770BAC0326A805BBEFD48056C8C121BDB8,
    0x13E02B6052719F607DACD3A088274F65596BD0D09920B61AB5DA61BBDC7F5049334CF11213945D57E5AC7D055D042B7E,
)
_G2Y = (
    0x0CE5D527727D6E118CC9CDC6DA2E351AADFD9BAA8CBDD3A76D429A695160D12C923AC9CC3BACA289E193548608B82801,
    0x0606C4A02EA734CC32ACD2B02BC28B99CB3E287E85A763AF267492AB572E99AB3F370D275CEC1DA1AAA9075FF05F79BE,
)
G2_GENERATOR = eip2537.encode_g2((_G2X, _G2Y))
NEG_G2_GENERATOR = eip2537.encode_g2((_G2X, (eip2537.P - _G2Y[0], eip2537.P - _G2Y[1])))


@dataclass(frozen=True)
class SecretKey:
    """A member's secret scalar (never printed)."""

    value: int = field(repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.value < CURVE_ORDER:
            raise ValueError("a BLS secret key is a non-zero scalar below the group order")

    @classmethod
    def from_seed(cls, seed: bytes) -> SecretKey:
        """IETF BLS KeyGen (HKDF-SHA-256) from at least 32 bytes of key material."""
        if len(seed) < 32:
            raise ValueError("a BLS key seed needs at least 32 bytes")
        return cls(int(G2ProofOfPossession.KeyGen(seed)))

    def public_key(self, backend: Backend = NATIVE) -> bytes:
        return backend.g2_generator_mul(self.value)

    def sign(self, message: bytes, backend: Backend = NATIVE) -> bytes:
        return backend.g1_mul(backend.hash_to_g1(message, SIGNATURE_DST), self.value)

    def prove_possession(self, backend: Backend = NATIVE) -> bytes:
        return backend.g1_mul(backend.hash_to_g1(self.public_key(backend), POP_DST), self.value)


def _verify(public_key: bytes, message: bytes, signature: bytes, dst: bytes, b: Backend) -> bool:
    try:
        if not any(public_key):
            return False  # the identity key verifies the identity signature on anything
        pairs = [(signature, NEG_G2_GENERATOR), (b.hash_to_g1(message, dst), public_key)]
        return b.pairing_check(pairs)
    except EncodingError:
        return False


def verify(public_key: bytes, message: bytes, signature: bytes, backend: Backend = NATIVE) -> bool:
    """One member's signature (or an aggregate against the aggregate of the signers' keys)."""
    return _verify(public_key, message, signature, SIGNATURE_DST, backend)


def verify_possession(public_key: bytes, proof: bytes, backend: Backend = NATIVE) -> bool:
    return _verify(public_key, public_key, proof, POP_DST, backend)


def aggregate_signatures(signatures: Sequence[bytes], backend: Backend = NATIVE) -> bytes:
    if not signatures:
        raise ValueError("nothing to aggregate")
    return backend.g1_sum(signatures)


def aggregate_public_keys(public_keys: Sequence[bytes], backend: Backend = NATIVE) -> bytes:
    if not public_keys:
        raise ValueError("nothing to aggregate")
    return backend.g2_sum(public_keys)


def verify_aggregate(
    public_keys: Sequence[bytes], message: bytes, signature: bytes, backend: Backend = NATIVE
) -> bool:
    """Many signers, one message: sound only for keys registered with a proof of possession."""
    return verify(aggregate_public_keys(public_keys, backend), message, signature, backend)


def dev_secret_keys(n: int) -> list[SecretKey]:
    """Publicly known committee keys for local chains and tests (never for real money)."""
    return [
        SecretKey.from_seed(hashlib.sha256(b"marginsync dev committee %d" % i).digest())
        for i in range(n)
    ]
