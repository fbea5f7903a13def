"""What the committee signs for a link of venues: certificates and pledge orders (VenueLink.sol).

The one Python copy of `IVenueLink`'s structs and digests:

    cert = Certificate(link_id=..., account=..., sequence=..., issued_at=..., global_equity_wad=...,
                       global_im_wad=..., global_mm_wad=..., venues=(VenueView(...), ...))
    message = certificate_digest(cert)     # the 32 bytes the BLS committee signs
    link.functions.submitCertificate(cert.as_abi(), bitmap, signature)

A digest is `keccak256(abi.encode(TAG, struct))`, exactly as the contract computes it
(`certificateDigest` / `orderDigest`; tests/venues/test_venue_link.py holds them equal). Every
field is checked when a message is built, so a value the contract would refuse or encode
differently fails here, before anything is signed, with one line naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from offchain.attest import UINT64_MAX, InvalidAttestation, _check_address, _check_uint

LINK_TAG = keccak(text="marginsync.link.v1")
CERTIFICATE_TAG = keccak(text="marginsync.certificate.v1")
ORDER_TAG = keccak(text="marginsync.order.v1")
MAX_VENUES = 32  # VenueLink.MAX_VENUES
UINT256_MAX = 2**256 - 1
INT256_MIN, INT256_MAX = -(2**255), 2**255 - 1
ZERO32 = bytes(32)

# The ABI tuples of IVenueLink's structs, field for field.
VENUE_ABI = "(uint64,address,address)"
VENUE_VIEW_ABI = "(uint64,address,uint64,uint64,uint256,uint256,uint256,uint256,uint256[])"
CERTIFICATE_ABI = f"(bytes32,address,uint64,uint64,int256,uint256,uint256,{VENUE_VIEW_ABI}[])"
ORDER_ABI = "(bytes32,uint64,address,uint8,uint256,uint256,uint256,bytes32,uint64)"


def _abi_address(address: str) -> str:
    # web3 takes only checksummed addresses; the digest is the same for any case.
    return str(to_checksum_address(address))


def _check_bytes32(where: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise InvalidAttestation(f"{where} must be 32 bytes, got {value!r}")


@dataclass(frozen=True)
class Venue:
    """One venue of a link, as one VenueLink knows it (`IVenueLink.Venue`)."""

    chain_id: int
    link: str
    claim_receiver: str

    def __post_init__(self) -> None:
        _check_uint("Venue.chain_id", self.chain_id, UINT64_MAX)
        _check_address("Venue.link", self.link)
        _check_address("Venue.claim_receiver", self.claim_receiver)

    def as_abi(self) -> tuple[int, str, str]:
        return (self.chain_id, _abi_address(self.link), _abi_address(self.claim_receiver))


def link_id(chain_ids: Sequence[int], links: Sequence[str]) -> bytes:
    """The id every VenueLink of the link computes from its venue list at `configure`."""
    return keccak(
        abi_encode(["bytes32", "uint64[]", "address[]"], [LINK_TAG, list(chain_ids), list(links)])
    )


@dataclass(frozen=True)
class VenueView:
    """One venue's part of a certificate (`IVenueLink.VenueView`): the account's nonces there,
    the requirement allocated to it, the pledges counted in its favour, the prices used."""

    chain_id: int
    link: str
    position_nonce: int
    pledge_nonce: int
    im_wad: int
    mm_wad: int
    pledged_wad: int
    price_asset_mask: int
    prices_e18: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_uint("VenueView.chain_id", self.chain_id, UINT64_MAX)
        _check_address("VenueView.link", self.link)
        for name in ("position_nonce", "pledge_nonce"):
            _check_uint(f"VenueView.{name}", getattr(self, name), UINT64_MAX)
        for name in ("im_wad", "mm_wad", "pledged_wad", "price_asset_mask"):
            _check_uint(f"VenueView.{name}", getattr(self, name), UINT256_MAX)
        for price in self.prices_e18:
            _check_uint("VenueView.prices_e18[]", price, UINT256_MAX)
        assets = self.price_asset_mask.bit_count()
        if len(self.prices_e18) != assets:
            raise InvalidAttestation(
                f"VenueView for chain {self.chain_id} has {len(self.prices_e18)} prices for "
                f"{assets} assets in its mask; give one price per set bit, ascending asset id"
            )

    def as_abi(self) -> tuple[Any, ...]:
        return (
            self.chain_id,
            _abi_address(self.link),
            self.position_nonce,
            self.pledge_nonce,
            self.im_wad,
            self.mm_wad,
            self.pledged_wad,
            self.price_asset_mask,
            list(self.prices_e18),
        )


@dataclass(frozen=True)
class Certificate:
    """One account's cross-venue certificate (`IVenueLink.Certificate`): `venues` is exactly the
    link's venues, in link order."""

    link_id: bytes
    account: str
    sequence: int
    issued_at: int
    global_equity_wad: int
    global_im_wad: int
    global_mm_wad: int
    venues: tuple[VenueView, ...]

    def __post_init__(self) -> None:
        _check_bytes32("Certificate.link_id", self.link_id)
        _check_address("Certificate.account", self.account)
        # A VenueLink applies only a sequence above the account's last, which starts at 0.
        if not 1 <= self.sequence <= UINT64_MAX:
            raise InvalidAttestation(f"Certificate.sequence={self.sequence} is outside 1..2^64-1")
        _check_uint("Certificate.issued_at", self.issued_at, UINT64_MAX)
        if not INT256_MIN <= self.global_equity_wad <= INT256_MAX:
            raise InvalidAttestation(
                f"Certificate.global_equity_wad={self.global_equity_wad} is outside int256"
            )
        _check_uint("Certificate.global_im_wad", self.global_im_wad, UINT256_MAX)
        _check_uint("Certificate.global_mm_wad", self.global_mm_wad, UINT256_MAX)
        if not 1 <= len(self.venues) <= MAX_VENUES:
            raise InvalidAttestation(
                f"a certificate names {len(self.venues)} venues; a link has 2..{MAX_VENUES}"
            )

    def as_abi(self) -> tuple[Any, ...]:
        return (
            self.link_id,
            _abi_address(self.account),
            self.sequence,
            self.issued_at,
            self.global_equity_wad,
            self.global_im_wad,
            self.global_mm_wad,
            [v.as_abi() for v in self.venues],
        )


def certificate_digest(c: Certificate) -> bytes:
    """The 32-byte message the committee signs: `VenueLink.certificateDigest(c)`."""
    return keccak(abi_encode(["bytes32", CERTIFICATE_ABI], [CERTIFICATE_TAG, c.as_abi()]))


class OrderKind(IntEnum):
    RELEASE = 1  # pay the pledge's remaining amount back to its account (X3, phase 2)
    CLAIM = 2  # pay `amount` to the claiming venue's insurance fund on this chain (X4)
    MOVE = 3  # the whole pledge now favours `to_venue` (X5)


@dataclass(frozen=True)
class Order:
    """A committee order on one pledge held by the VenueLink at (`chain_id`, `link`)."""

    link_id: bytes
    chain_id: int
    link: str
    kind: OrderKind
    pledge_id: int
    issued_at: int
    amount: int = 0
    to_venue: int = 0
    claim_id: bytes = field(default=ZERO32)

    def __post_init__(self) -> None:
        _check_bytes32("Order.link_id", self.link_id)
        _check_uint("Order.chain_id", self.chain_id, UINT64_MAX)
        _check_address("Order.link", self.link)
        if self.kind not in tuple(OrderKind):
            raise InvalidAttestation(f"Order.kind={self.kind} is not RELEASE, CLAIM or MOVE")
        for name in ("pledge_id", "amount", "to_venue"):
            _check_uint(f"Order.{name}", getattr(self, name), UINT256_MAX)
        _check_uint("Order.issued_at", self.issued_at, UINT64_MAX)
        _check_bytes32("Order.claim_id", self.claim_id)

    def as_abi(self) -> tuple[Any, ...]:
        return (
            self.link_id,
            self.chain_id,
            _abi_address(self.link),
            int(self.kind),
            self.pledge_id,
            self.amount,
            self.to_venue,
            self.claim_id,
            self.issued_at,
        )


def order_digest(o: Order) -> bytes:
    """The 32-byte message the committee signs: `VenueLink.orderDigest(o)`."""
    return keccak(abi_encode(["bytes32", ORDER_ABI], [ORDER_TAG, o.as_abi()]))


def claim_id(
    claiming_chain_id: int, account: str, deficit_block: int, deficit_log_index: int
) -> bytes:
    """The id of a claim for the deficit booked at (block, log index) on the claiming chain: one
    deficit, one claim, paid at most once (X4, G04)."""
    _check_address("claim account", account)
    return keccak(
        abi_encode(
            ["uint256", "address", "uint256", "uint256"],
            [claiming_chain_id, account, deficit_block, deficit_log_index],
        )
    )


def pledged_wad(amount: int, decimals: int) -> int:
    """A pledge of `amount` quote-token units in wad: the quote token is worth $1 at full weight
    (pledges are in the quote token only)."""
    return amount * 10 ** (18 - decimals)
