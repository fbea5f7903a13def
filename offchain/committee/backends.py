"""BLS12-381 arithmetic behind one small interface, on EIP-2537-encoded bytes.

`PyEccBackend` is the reference (py-ecc, pure Python: a pairing takes ≈ 0.4 s). `ArkworksBackend`
(py-arkworks-bls12381, native) does the same in about a millisecond and serves the hot paths:
the aggregator checks every partial signature it receives. Tests run every scheme operation on
both and require the same bytes and the same verdicts.

Every point that enters is decoded strictly: canonical field elements, on the curve, in the
prime-order subgroup; anything else raises `EncodingError`, as the precompiles refuse it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import py_arkworks_bls12381 as ark
from py_ecc import optimized_bls12_381 as ecc
from py_ecc.bls.hash_to_curve import hash_to_G1

from offchain.committee import eip2537
from offchain.committee.eip2537 import EncodingError

CURVE_ORDER = int(ecc.curve_order)


class Backend(Protocol):
    name: str

    def hash_to_g1(self, message: bytes, dst: bytes) -> bytes:
        """RFC 9380 BLS12381G1_XMD:SHA-256_SSWU_RO_ with the given domain separation tag."""
        ...

    def g1_mul(self, point: bytes, scalar: int) -> bytes: ...

    def g2_generator_mul(self, scalar: int) -> bytes: ...

    def g1_sum(self, points: Sequence[bytes]) -> bytes: ...

    def g2_sum(self, points: Sequence[bytes]) -> bytes: ...

    def pairing_check(self, pairs: Sequence[tuple[bytes, bytes]]) -> bool:
        """Whether Π e(g1_i, g2_i) is the identity (as the PAIRING precompile answers)."""
        ...

    def check_g1(self, point: bytes) -> None:
        """Raises `EncodingError` unless `point` is a canonical G1 subgroup element."""
        ...

    def check_g2(self, point: bytes) -> None: ...


class PyEccBackend:
    """The reference: py-ecc's optimized (Jacobian) BLS12-381 in pure Python."""

    name = "py-ecc"

    @staticmethod
    def _g1(data: bytes) -> Any:
        affine = eip2537.decode_g1(data)
        if affine is None:
            return ecc.Z1
        point = (ecc.FQ(affine[0]), ecc.FQ(affine[1]), ecc.FQ.one())
        if not ecc.is_on_curve(point, ecc.b):
            raise EncodingError("the G1 point is not on the curve")
        if not ecc.is_inf(ecc.multiply(point, CURVE_ORDER)):
            raise EncodingError("the G1 point is not in the prime-order subgroup")
        return point

    @staticmethod
    def _g2(data: bytes) -> Any:
        affine = eip2537.decode_g2(data)
        if affine is None:
            return ecc.Z2
        (x0, x1), (y0, y1) = affine
        point = (ecc.FQ2([x0, x1]), ecc.FQ2([y0, y1]), ecc.FQ2.one())
        if not ecc.is_on_curve(point, ecc.b2):
            raise EncodingError("the G2 point is not on the curve")
        if not ecc.is_inf(ecc.multiply(point, CURVE_ORDER)):
            raise EncodingError("the G2 point is not in the prime-order subgroup")
        return point

    @staticmethod
    def _enc_g1(point: Any) -> bytes:
        if ecc.is_inf(point):
            return eip2537.encode_g1(None)
        x, y = ecc.normalize(point)
        return eip2537.encode_g1((int(x), int(y)))

    @staticmethod
    def _enc_g2(point: Any) -> bytes:
        if ecc.is_inf(point):
            return eip2537.encode_g2(None)
        x, y = ecc.normalize(point)
        return eip2537.encode_g2(
            ((int(x.coeffs[0]), int(x.coeffs[1])), (int(y.coeffs[0]), int(y.coeffs[1])))
        )

    def hash_to_g1(self, message: bytes, dst: bytes) -> bytes:
        return self._enc_g1(hash_to_G1(message, dst, hashlib.sha256))  # type: ignore[arg-type]

    def g1_mul(self, point: bytes, scalar: int) -> bytes:
        return self._enc_g1(ecc.multiply(self._g1(point), scalar % CURVE_ORDER))

    def g2_generator_mul(self, scalar: int) -> bytes:
        return self._enc_g2(ecc.multiply(ecc.G2, scalar % CURVE_ORDER))

    def g1_sum(self, points: Sequence[bytes]) -> bytes:
        total = ecc.Z1
        for p in points:
            total = ecc.add(total, self._g1(p))
        return self._enc_g1(total)

    def g2_sum(self, points: Sequence[bytes]) -> bytes:
        total = ecc.Z2
        for p in points:
            total = ecc.add(total, self._g2(p))
        return self._enc_g2(total)

    def pairing_check(self, pairs: Sequence[tuple[bytes, bytes]]) -> bool:
        product = ecc.FQ12.one()
        for p1, p2 in pairs:
            a, b = self._g1(p1), self._g2(p2)
            if ecc.is_inf(a) or ecc.is_inf(b):
                continue
            product *= ecc.pairing(b, a, final_exponentiate=False)
        return bool(ecc.final_exponentiate(product) == ecc.FQ12.one())

    def check_g1(self, point: bytes) -> None:
        self._g1(point)

    def check_g2(self, point: bytes) -> None:
        self._g2(point)


class ArkworksBackend:
    """Native arkworks through py-arkworks-bls12381; same bytes, about 300× faster."""

    name = "arkworks"

    @staticmethod
    def _g1(data: bytes) -> Any:
        raw = eip2537.unpad_be48(eip2537.encode_g1(eip2537.decode_g1(data)))
        try:
            return ark.G1Point.from_xy_bytes_be(raw)
        except Exception as exc:  # the binding raises a bare exception type
            raise EncodingError(f"not a G1 subgroup point ({exc})") from exc

    @staticmethod
    def _g2(data: bytes) -> Any:
        raw = eip2537.unpad_be48(eip2537.encode_g2(eip2537.decode_g2(data)))
        try:
            return ark.G2Point.from_xy_bytes_be(raw)
        except Exception as exc:
            raise EncodingError(f"not a G2 subgroup point ({exc})") from exc

    @staticmethod
    def _scalar(value: int) -> Any:
        return ark.Scalar(value % CURVE_ORDER)

    def hash_to_g1(self, message: bytes, dst: bytes) -> bytes:
        return eip2537.pad_be48(ark.G1Point.hash_to_curve(message, dst).to_xy_bytes_be())

    def g1_mul(self, point: bytes, scalar: int) -> bytes:
        return eip2537.pad_be48((self._g1(point) * self._scalar(scalar)).to_xy_bytes_be())

    def g2_generator_mul(self, scalar: int) -> bytes:
        return eip2537.pad_be48((ark.G2Point() * self._scalar(scalar)).to_xy_bytes_be())

    def g1_sum(self, points: Sequence[bytes]) -> bytes:
        total = ark.G1Point.identity()
        for p in points:
            total = total + self._g1(p)
        return eip2537.pad_be48(total.to_xy_bytes_be())

    def g2_sum(self, points: Sequence[bytes]) -> bytes:
        total = ark.G2Point.identity()
        for p in points:
            total = total + self._g2(p)
        return eip2537.pad_be48(total.to_xy_bytes_be())

    def pairing_check(self, pairs: Sequence[tuple[bytes, bytes]]) -> bool:
        g1s = [self._g1(a) for a, _ in pairs]
        g2s = [self._g2(b) for _, b in pairs]
        return bool(ark.GT.pairing_check(g1s, g2s))

    def check_g1(self, point: bytes) -> None:
        self._g1(point)

    def check_g2(self, point: bytes) -> None:
        self._g2(point)


REFERENCE: Backend = PyEccBackend()
NATIVE: Backend = ArkworksBackend()
BACKENDS: tuple[Backend, ...] = (REFERENCE, NATIVE)
