"""One VenueLink's state rebuilt from its events (and its committee registry's key epoch), and
its in-force rule, exactly as the contract computes it.

* `Configured` → the link id, the venue list, this venue's index, the registry;
  `InnerSet` → the verifier asked when no certificate is in force; `ParamsSet` → max age, band.
* `CertificateApplied` → the account's applied certificate (its own entry, the key epoch).
* `PledgeChanged` → the pledge's (account, target, remaining amount, state) and the account's
  pledge nonce; `RebalanceAllowanceSet` → the account's allowance; `ClaimPaid`,
  `OrderExecuted` → claim ids and order digests used up.
* The registry's events (`apply_registry`) → its key epoch: a certificate counts only under
  the epoch it was verified in (K4).

`requirement_in_force` is the one Python copy of `VenueLink.requirementInForce`'s certificate
branch (the fallback is the caller's: offchain/chain/margin_mirror.py asks the attestation
mirror next, as the contract asks its inner verifier). `linked_margin_mirror` builds a venue's
MarginMirror with its link's mirror plugged in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from offchain.chain.attestations import InForce
from offchain.chain.bindings import Chain, Event
from offchain.chain.margin_mirror import MarginMirror
from offchain.link.messages import Venue
from offchain.models import Deployment

BPS = 10_000
DEFAULT_MAX_AGE_S = 30  # VenueLink's initial maxAgeSeconds (also in its first ParamsSet)
DEFAULT_PRICE_BAND_BPS = 100


class PledgeState(IntEnum):
    NONE = 0
    ACTIVE = 1
    RELEASING = 2
    RELEASED = 3


@dataclass(frozen=True)
class AppliedCertificate:
    """An account's last certificate here: its own entry, and the key epoch it was signed in."""

    sequence: int
    issued_at: int
    position_nonce: int
    pledge_nonce: int
    key_epoch: int
    im_wad: int
    mm_wad: int
    pledged_wad: int
    price_asset_mask: int
    prices_e18: Mapping[int, int]  # by oracle asset id, for the assets in the mask


@dataclass(frozen=True)
class Pledge:
    account: str
    to_venue: int
    state: PledgeState
    amount: int  # what remains, in quote token units


class LinkMirror:
    """Applies one VenueLink's events, and its committee registry's, in order (the caller
    fetches them: `MarginMirror` does, in the same `eth_getLogs` as the venue's)."""

    def __init__(self, address: str, committee: str | None) -> None:
        self.address = address
        self.committee = committee
        self.link_id: bytes | None = None
        self.venues: tuple[Venue, ...] = ()
        self.self_index: int | None = None
        self.registry: str | None = None
        self.inner: str | None = None
        self.max_age_s = DEFAULT_MAX_AGE_S
        self.price_band_bps = DEFAULT_PRICE_BAND_BPS
        self.key_epoch = 0
        self.certificates: dict[str, AppliedCertificate] = {}
        self.pledge_nonces: dict[str, int] = {}
        self.pledges: dict[int, Pledge] = {}
        self.allowances: dict[str, int] = {}
        self.paid_claims: set[bytes] = set()
        self.executed_orders: set[bytes] = set()

    def apply(self, e: Event) -> None:
        handler = getattr(self, f"_on_{e.name}", None)
        if handler is not None:
            handler(e.args)

    def apply_registry(self, e: Event) -> None:
        """An event of the link's committee registry: every key-set or threshold change carries
        the new key epoch (and a cached signer set the current one)."""
        if "keyEpoch" in e.args:
            self.key_epoch = int(e.args["keyEpoch"])

    def _on_Configured(self, a: Mapping[str, Any]) -> None:
        self.link_id = bytes(a["linkId"])
        self.self_index = int(a["selfIndex"])
        self.venues = tuple(
            Venue(int(v["chainId"]), str(v["link"]), str(v["claimReceiver"])) for v in a["venues"]
        )
        self.registry = str(a["registry"])

    def _on_InnerSet(self, a: Mapping[str, Any]) -> None:
        self.inner = str(a["inner"])

    def _on_ParamsSet(self, a: Mapping[str, Any]) -> None:
        self.max_age_s = int(a["maxAgeSeconds"])
        self.price_band_bps = int(a["priceBandBps"])

    def _on_CertificateApplied(self, a: Mapping[str, Any]) -> None:
        c = a["applied"]
        mask = int(c["priceAssetMask"])
        assets = [i for i in range(mask.bit_length()) if mask >> i & 1]
        self.certificates[str(a["account"])] = AppliedCertificate(
            sequence=int(c["sequence"]),
            issued_at=int(c["issuedAt"]),
            position_nonce=int(c["positionNonce"]),
            pledge_nonce=int(c["pledgeNonce"]),
            key_epoch=int(c["keyEpoch"]),
            im_wad=int(c["imWad"]),
            mm_wad=int(c["mmWad"]),
            pledged_wad=int(c["pledgedWad"]),
            price_asset_mask=mask,
            prices_e18=dict(zip(assets, (int(p) for p in c["pricesE18"]), strict=True)),
        )

    def _on_PledgeChanged(self, a: Mapping[str, Any]) -> None:
        account = str(a["account"])
        self.pledges[int(a["pledgeId"])] = Pledge(
            account, int(a["toVenue"]), PledgeState(int(a["state"])), int(a["amount"])
        )
        self.pledge_nonces[account] = int(a["pledgeNonce"])

    def _on_RebalanceAllowanceSet(self, a: Mapping[str, Any]) -> None:
        self.allowances[str(a["account"])] = int(a["allowance"])

    def _on_ClaimPaid(self, a: Mapping[str, Any]) -> None:
        self.paid_claims.add(bytes(a["claimId"]))

    def _on_OrderExecuted(self, a: Mapping[str, Any]) -> None:
        self.executed_orders.add(bytes(a["digest"]))

    def pledged_to(self, venue: int, account: str | None = None) -> dict[int, Pledge]:
        """The pledges held here that favour `venue` and still count (ACTIVE), by id."""
        return {
            i: p
            for i, p in self.pledges.items()
            if p.to_venue == venue
            and p.state is PledgeState.ACTIVE
            and (account is None or p.account == account)
        }

    def in_force(
        self,
        account: str,
        position_nonce: int,
        market_asset_mask: int,
        prices_e18: Mapping[int, int],
        now: int,
        key_epoch: int,
    ) -> AppliedCertificate | None:
        """The account's certificate if it is in force at block time `now` (every clause of
        `VenueLink._inForce`), else None."""
        c = self.certificates.get(account)
        if (
            c is None
            or c.position_nonce != position_nonce
            or c.pledge_nonce != self.pledge_nonces.get(account, 0)
            or c.key_epoch != key_epoch
            or not 0 <= now - c.issued_at <= self.max_age_s
            or market_asset_mask & ~c.price_asset_mask
        ):
            return None
        for asset in range(market_asset_mask.bit_length()):
            if not market_asset_mask >> asset & 1:
                continue
            current, certified = prices_e18[asset], c.prices_e18[asset]
            if abs(certified - current) * BPS > current * self.price_band_bps:
                return None
        return c

    def requirement_in_force(
        self,
        account: str,
        position_nonce: int,
        market_asset_mask: int,
        prices_e18: Mapping[int, int],
        static_im_wad: int,
        static_mm_wad: int,
        now: int,
        key_epoch: int,
    ) -> InForce:
        """`VenueLink.requirementInForce` when a certificate is in force: the X2 clamp in the
        contract's integers. Not in force: (False, static), and the caller falls back as the
        contract does (to the inner verifier)."""
        c = self.in_force(account, position_nonce, market_asset_mask, prices_e18, now, key_epoch)
        if c is None:
            return InForce(False, static_im_wad, static_mm_wad)
        im = clamp(c.im_wad, static_im_wad, c.pledged_wad)
        mm = clamp(c.mm_wad, static_mm_wad, c.pledged_wad)
        return InForce(True, max(im, mm), mm)


def linked_margin_mirror(chain: Chain, d: Deployment) -> MarginMirror:
    """The venue's margin mirror, with its link's certificates when it is linked: what the
    keeper and the engine use on any venue."""
    if not d.venue_link:
        return MarginMirror(chain, d)
    # The registry is fixed when the link is configured (once): one read here, so its key-epoch
    # events come in the same `eth_getLogs` as everything else.
    registry = str(chain.contract("VenueLink", d.venue_link).functions.registry().call())
    committee = registry if int(registry, 16) else None
    return MarginMirror(chain, d, LinkMirror(d.venue_link, committee))


def clamp(certified_wad: int, static_wad: int, pledged_wad: int) -> int:
    """X2: never below the static requirement less what pledges cover; never capped above."""
    return max(certified_wad, max(static_wad - pledged_wad, 0))
