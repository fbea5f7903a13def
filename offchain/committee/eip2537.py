"""The EIP-2537 byte layout of BLS12-381 field elements and points: the one place it is written.

A base-field element (Fp) is 64 bytes, big-endian, its top 16 bytes zero and its value below the
field modulus p. An Fp2 element c0 + c1·u is c0‖c1 (EIP-197's BN254 precompiles order the two
the other way). A G1 point is x‖y (128 bytes), a G2 point x‖y with Fp2 coordinates (256 bytes);
the point at infinity is all zeros. The precompiles refuse any other encoding, and so does
`decode_*` here, with the reason.

Points are affine tuples of ints: G1 `(x, y)`, G2 `((x0, x1), (y0, y1))`, `None` for infinity.
Whether a point lies on the curve or in the subgroup is the backends' business (`backends.py`).
"""

from __future__ import annotations

from py_ecc.fields import optimized_bls12_381_FQ as _FQ

P = int(_FQ.field_modulus)
FP_BYTES = 64
G1_BYTES = 2 * FP_BYTES
G2_BYTES = 4 * FP_BYTES
_PAD = FP_BYTES - 48

Fp2 = tuple[int, int]
G1Affine = tuple[int, int] | None
G2Affine = tuple[Fp2, Fp2] | None


class EncodingError(ValueError):
    """Bytes that no EIP-2537 precompile would accept."""


def encode_fp(value: int) -> bytes:
    if not 0 <= value < P:
        raise EncodingError(f"{value:#x} is not a canonical field element (must be below p)")
    return value.to_bytes(FP_BYTES, "big")


def decode_fp(data: bytes) -> int:
    if len(data) != FP_BYTES:
        raise EncodingError(f"a field element is {FP_BYTES} bytes, got {len(data)}")
    if any(data[:_PAD]):
        raise EncodingError("a field element's top 16 bytes must be zero")
    value = int.from_bytes(data, "big")
    if value >= P:
        raise EncodingError(f"{value:#x} is not a canonical field element (must be below p)")
    return value


def encode_fp2(value: Fp2) -> bytes:
    """c0‖c1: the real part first."""
    return encode_fp(value[0]) + encode_fp(value[1])


def decode_fp2(data: bytes) -> Fp2:
    if len(data) != 2 * FP_BYTES:
        raise EncodingError(f"an Fp2 element is {2 * FP_BYTES} bytes, got {len(data)}")
    return decode_fp(data[:FP_BYTES]), decode_fp(data[FP_BYTES:])


def encode_g1(point: G1Affine) -> bytes:
    if point is None:
        return bytes(G1_BYTES)
    return encode_fp(point[0]) + encode_fp(point[1])


def decode_g1(data: bytes) -> G1Affine:
    if len(data) != G1_BYTES:
        raise EncodingError(f"a G1 point is {G1_BYTES} bytes, got {len(data)}")
    if not any(data):
        return None
    return decode_fp(data[:FP_BYTES]), decode_fp(data[FP_BYTES:])


def encode_g2(point: G2Affine) -> bytes:
    if point is None:
        return bytes(G2_BYTES)
    return encode_fp2(point[0]) + encode_fp2(point[1])


def decode_g2(data: bytes) -> G2Affine:
    if len(data) != G2_BYTES:
        raise EncodingError(f"a G2 point is {G2_BYTES} bytes, got {len(data)}")
    if not any(data):
        return None
    half = 2 * FP_BYTES
    return decode_fp2(data[:half]), decode_fp2(data[half:])


def pad_be48(data: bytes) -> bytes:
    """Big-endian 48-byte coordinates (as arkworks and blst write them) in 64-byte slots."""
    if len(data) % 48:
        raise EncodingError(f"expected 48-byte coordinates, got {len(data)} bytes")
    return b"".join(bytes(_PAD) + data[i : i + 48] for i in range(0, len(data), 48))


def unpad_be48(data: bytes) -> bytes:
    """The inverse of `pad_be48`, after checking every slot is canonical."""
    if len(data) % FP_BYTES:
        raise EncodingError(f"expected 64-byte field elements, got {len(data)} bytes")
    out = b""
    for i in range(0, len(data), FP_BYTES):
        decode_fp(data[i : i + FP_BYTES])
        out += data[i + _PAD : i + FP_BYTES]
    return out
