"""Margin attestations: the EIP-712 typed data (defined here once), k-of-n signing, verification.

A small public API for the engine, keepers and third parties:

    batch = Batch(sequence=..., issued_at=..., price_asset_mask=..., prices_e18=..., entries=...)
    domain = Domain(chain_id=31337, verifying_contract="0x...")
    signatures = sign(batch, domain, keys)            # k signatures, ascending signer address
    assert recover_signers(batch, domain, signatures) == sorted signer addresses

The digest is also the engine's idempotency key: the same payload always has the same digest.
`TYPES` must match `AttestationVerifier`'s typehash; `tests/test_attest.py` compares them.

Entries travel packed (I36): `ENTRY_BYTES` (44) bytes each, account (20) ‖ mmMicroUsd (8) ‖
imMicroUsd (8) ‖ positionNonce (8), big-endian (the order of the verifier's storage slot, so it
stores an entry with one shift), concatenated into one `bytes entries` field that EIP-712 signs
as its keccak256. `Entry.packed` and `unpack_entries` are the one Python copy of
that layout; the verifier's `BatchApplied` event carries the same bytes back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from coincurve import PrivateKey, PublicKey
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

DOMAIN_NAME = "marginsync"
DOMAIN_VERSION = "1"
MICRO_USD_IN_WAD = 10**12
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
# The verifier stores attested prices as uint128 (`BatchRecord.pricesE18`).
PRICE_E18_LIMIT = 2**128
ENTRY_BYTES = 44  # AttestationVerifier.ENTRY_BYTES: address 20 + three uint64
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

# The one definition of the typed data. Field order is the signed order.
TYPES: dict[str, list[tuple[str, str]]] = {
    "MarginBatch": [
        ("sequence", "uint64"),
        ("issuedAt", "uint64"),
        ("priceAssetMask", "uint32"),
        ("pricesE18", "uint256[]"),
        ("entries", "bytes"),
    ],
}
_EIP712_DOMAIN = (
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def encode_type(primary: str) -> str:
    """EIP-712 `encodeType`: the primary type, then referenced struct types sorted by name."""
    referenced = sorted(
        {t.rstrip("[]") for _, t in TYPES[primary] if t.rstrip("[]") in TYPES} - {primary}
    )

    def one(name: str) -> str:
        return f"{name}({','.join(f'{t} {n}' for n, t in TYPES[name])})"

    return one(primary) + "".join(one(r) for r in referenced)


def typehash(primary: str) -> bytes:
    return keccak(text=encode_type(primary))


BATCH_TYPEHASH = typehash("MarginBatch")


class InvalidAttestation(ValueError):
    """A field the verifier would refuse (or hash differently): caught when the batch is built,
    before anything is signed."""


def _check_uint(where: str, value: int, limit: int) -> None:
    if not 0 <= value <= limit:
        raise InvalidAttestation(f"{where}={value} is outside 0..{limit}; clamp or rescale it")


@lru_cache(maxsize=1 << 16)
def _checksummed(address: bytes) -> str:
    # EIP-55 costs a keccak per address; a mirror sees the same accounts batch after batch.
    return str(to_checksum_address(address))


def _check_address(where: str, account: str) -> None:
    """20 bytes as 0x-hex. All-lower or all-upper hex is unambiguous; mixed case must be a
    valid EIP-55 checksum, so a mistyped address never yields a digest for another account."""
    if not isinstance(account, str) or not _ADDRESS.fullmatch(account):
        raise InvalidAttestation(f"{where}={account!r} is not a 0x-prefixed 20-byte hex address")
    body = account[2:]
    if (
        body != body.lower()
        and body != body.upper()
        and _checksummed(bytes.fromhex(body)) != account
    ):
        raise InvalidAttestation(f"{where}={account} fails its EIP-55 checksum")


@dataclass(frozen=True)
class Entry:
    account: str
    position_nonce: int
    im_micro_usd: int
    mm_micro_usd: int

    def __post_init__(self) -> None:
        _check_address("Entry.account", self.account)
        for name in ("position_nonce", "im_micro_usd", "mm_micro_usd"):
            _check_uint(f"Entry.{name}", getattr(self, name), UINT64_MAX)

    def packed(self) -> bytes:
        """The entry's 44 bytes in `MarginBatch.entries`."""
        return (
            bytes.fromhex(self.account[2:])
            + self.mm_micro_usd.to_bytes(8, "big")
            + self.im_micro_usd.to_bytes(8, "big")
            + self.position_nonce.to_bytes(8, "big")
        )


def unpack_entries(packed: bytes) -> tuple[Entry, ...]:
    """`MarginBatch.entries` (or `BatchApplied.entries`) back into entries, in order."""
    if len(packed) % ENTRY_BYTES:
        raise InvalidAttestation(
            f"entries of {len(packed)} bytes are not whole {ENTRY_BYTES}-byte entries"
        )
    return tuple(
        Entry(
            account=_checksummed(packed[i : i + 20]),
            mm_micro_usd=int.from_bytes(packed[i + 20 : i + 28], "big"),
            im_micro_usd=int.from_bytes(packed[i + 28 : i + 36], "big"),
            position_nonce=int.from_bytes(packed[i + 36 : i + 44], "big"),
        )
        for i in range(0, len(packed), ENTRY_BYTES)
    )


def applied_entries(packed: bytes, applied_bits: Sequence[int]) -> list[Entry]:
    """The entries of a `BatchApplied` event that took effect: entry i did when bit i % 256 of
    `applied_bits[i // 256]` is set."""
    return [
        e for i, e in enumerate(unpack_entries(packed)) if applied_bits[i >> 8] >> (i & 255) & 1
    ]


@dataclass(frozen=True)
class Batch:
    sequence: int
    issued_at: int
    price_asset_mask: int
    prices_e18: tuple[int, ...]
    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        if self.sequence <= 0 or self.sequence > UINT64_MAX:
            raise InvalidAttestation(f"Batch.sequence={self.sequence} must be a positive uint64")
        _check_uint("Batch.issued_at", self.issued_at, UINT64_MAX)
        _check_uint("Batch.price_asset_mask", self.price_asset_mask, UINT32_MAX)
        if bin(self.price_asset_mask).count("1") != len(self.prices_e18):
            raise InvalidAttestation(
                "Batch.prices_e18 needs one price per bit of price_asset_mask, ascending"
            )
        for i, price in enumerate(self.prices_e18):
            if not 0 < price < PRICE_E18_LIMIT:
                raise InvalidAttestation(
                    f"Batch.prices_e18[{i}]={price} is outside 1..2^128-1 (the verifier's uint128)"
                )

    @cached_property
    def packed_entries(self) -> bytes:
        """`MarginBatch.entries`: the entries' 44-byte records, concatenated in order."""
        return b"".join(e.packed() for e in self.entries)

    def struct_hash(self) -> bytes:
        return keccak(
            BATCH_TYPEHASH
            + _word(self.sequence)
            + _word(self.issued_at)
            + _word(self.price_asset_mask)
            + keccak(b"".join(_word(p) for p in self.prices_e18))
            + keccak(self.packed_entries)
        )

    def as_tuple(self) -> tuple[int, int, int, list[int], bytes]:
        """The `MarginBatch` struct as web3 wants it for a contract call."""
        return (
            self.sequence,
            self.issued_at,
            self.price_asset_mask,
            list(self.prices_e18),
            self.packed_entries,
        )


@dataclass(frozen=True)
class Domain:
    chain_id: int
    verifying_contract: str

    def __post_init__(self) -> None:
        if not 0 < self.chain_id < 2**256:
            raise InvalidAttestation(f"Domain.chain_id={self.chain_id} must be a positive uint256")
        _check_address("Domain.verifying_contract", self.verifying_contract)

    @cached_property
    def separator_hash(self) -> bytes:
        return self.separator()

    def separator(self) -> bytes:
        return keccak(
            abi_encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [
                    keccak(text=_EIP712_DOMAIN),
                    keccak(text=DOMAIN_NAME),
                    keccak(text=DOMAIN_VERSION),
                    self.chain_id,
                    self.verifying_contract,
                ],
            )
        )


def digest(batch: Batch, domain: Domain) -> bytes:
    """The EIP-712 digest the keys sign: keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(batch))."""
    return keccak(b"\x19\x01" + domain.separator_hash + batch.struct_hash())


def wad_to_micro_usd_up(amount_wad: int) -> int:
    """A requirement in wad to micro-USD, rounded up (against the account), capped at uint64."""
    return min(-(-amount_wad // MICRO_USD_IN_WAD), UINT64_MAX)


def address_of(key: bytes) -> str:
    public = PrivateKey(key).public_key.format(compressed=False)[1:]
    return str(to_checksum_address(keccak(public)[-20:]))


def _key_bytes(key: str | bytes) -> bytes:
    if isinstance(key, bytes):
        return key
    return bytes.fromhex(key.removeprefix("0x"))


def sign_digest(message_digest: bytes, keys: Iterable[str | bytes]) -> bytes:
    """k signatures over a digest, as (r ‖ s ‖ v) concatenated in ascending signer address,
    the order the contract requires. coincurve emits low-s signatures (no malleable twins)."""
    signed: list[tuple[str, bytes]] = []
    for key in keys:
        raw = _key_bytes(key)
        sig = PrivateKey(raw).sign_recoverable(message_digest, hasher=None)
        signed.append((address_of(raw).lower(), sig[:64] + bytes([sig[64] + 27])))
    signed.sort()
    return b"".join(sig for _, sig in signed)


def sign(batch: Batch, domain: Domain, keys: Sequence[str | bytes]) -> bytes:
    return sign_digest(digest(batch, domain), keys)


def recover_signers(batch: Batch, domain: Domain, signatures: bytes) -> list[str]:
    """The signer of each 65-byte signature, in order; raises ValueError on a malformed or
    malleable (high-s) signature, as the contract rejects them."""
    return recover_digest_signers(digest(batch, domain), signatures)


def recover_digest_signers(message_digest: bytes, signatures: bytes) -> list[str]:
    """`recover_signers` for a digest already computed."""
    if len(signatures) % 65:
        raise ValueError("signatures must be a whole number of 65-byte (r, s, v) signatures")
    out = []
    for i in range(0, len(signatures), 65):
        r, s, v = signatures[i : i + 32], signatures[i + 32 : i + 64], signatures[i + 64]
        if v not in (27, 28):
            raise ValueError(f"signature {i // 65}: v={v} is not 27 or 28")
        if int.from_bytes(s, "big") > _SECP256K1_N // 2:
            raise ValueError(f"signature {i // 65}: high s (malleable)")
        public = PublicKey.from_signature_and_message(
            r + s + bytes([v - 27]), message_digest, hasher=None
        )
        out.append(str(to_checksum_address(keccak(public.format(compressed=False)[1:])[-20:])))
    return out


def typed_data(batch: Batch, domain: Domain) -> dict[str, Any]:
    """The full EIP-712 JSON for `eth_signTypedData_v4`, for wallets and remote signers.

    Every integer is written as a decimal string: JSON numbers above 2^53 lose precision in
    JavaScript, and wallets, ethers and cast refuse them (prices in 1e18 are far above). The
    entries are one `bytes` value, 0x-hex of the packed records (`unpack_entries` reads them)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            **{k: [{"name": n, "type": t} for n, t in v] for k, v in TYPES.items()},
        },
        "primaryType": "MarginBatch",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": str(domain.chain_id),
            "verifyingContract": to_checksum_address(domain.verifying_contract),
        },
        "message": {
            "sequence": str(batch.sequence),
            "issuedAt": str(batch.issued_at),
            "priceAssetMask": str(batch.price_asset_mask),
            "pricesE18": [str(p) for p in batch.prices_e18],
            "entries": "0x" + batch.packed_entries.hex(),
        },
    }
