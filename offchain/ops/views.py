"""Read-only views: one account (`marginsync account`) and the deployment (`marginsync status`).

Figures come from the contracts' own views (`accountHealth` is the one health function;
`requirementInForce` says whether a certificate, an attestation or the static rule sets the
margin), so what is shown is what a liquidation would see.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from offchain.chain import Chain, checksum
from offchain.chain.client import Client
from offchain.chain.mirror import AccountMirror
from offchain.models import WAD
from offchain.risk.health import AccountState, CollateralParams, MarketParams, health

# IOracleRouter.PriceStatus, in declaration order.
PRICE_STATUS = (
    "ok",
    "no feed",
    "feed call failed",
    "non-positive",
    "stale",
    "future",
    "out of bounds",
)


@dataclass(frozen=True)
class PositionView:
    market: str
    size: float
    price_usd: float
    notional_usd: float
    liquidation_price_usd: float | None  # the market's price at which equity meets MM, others fixed


@dataclass(frozen=True)
class AccountView:
    address: str
    cash_usd: float
    collateral: dict[str, float]  # symbol -> tokens (quote token is cash)
    positions: list[PositionView]
    equity_usd: float
    im_usd: float
    mm_usd: float
    static_im_usd: float
    static_mm_usd: float
    attested: bool  # an engine attestation sets the margin (S1)
    # Funding the positions owe since they last settled, already out of equity (I26); None when
    # a feed is broken (the contract then values at quotes and the difference is not funding).
    funding_owed_usd: float | None = None
    certified: bool = False  # a cross-venue certificate sets it (a linked venue, X2)

    @property
    def health(self) -> float | None:
        """Equity over maintenance margin: below 1 the account is liquidatable."""
        return self.equity_usd / self.mm_usd if self.mm_usd else None


class PledgeState(IntEnum):  # IVenueLink.PledgeState
    NONE = 0
    ACTIVE = 1
    RELEASING = 2
    RELEASED = 3


@dataclass(frozen=True)
class PledgeRow:
    """One pledge as the VenueLink holding it knows it."""

    pledge_id: int
    account: str
    to_venue: int
    state: PledgeState
    amount: int  # quote token units remaining


@dataclass(frozen=True)
class LinkAccountView:
    """An account on a linked venue: its last certificate here and the pledges held here."""

    sequence: int  # of the last certificate applied here; 0: none yet
    issued_at: int
    pledged_usd: float  # pledges on other venues that certificate counts in this venue's favour
    held: list[PledgeRow]  # pledges this venue's link holds for the account (for other venues)


def pledges_of(chain: Chain, link_address: str, account: str) -> list[PledgeRow]:
    """`account`'s pledges held by the VenueLink at `link_address`, oldest first."""
    link = chain.contract("VenueLink", link_address)
    rows = []
    for pledge_id in range(1, int(link.functions.pledgeCount().call()) + 1):
        owner, to_venue, state, amount = link.functions.pledgeOf(pledge_id).call()
        if checksum(owner) == checksum(account):
            rows.append(PledgeRow(pledge_id, checksum(owner), to_venue, PledgeState(state), amount))
    return rows


def link_account_view(client: Client, address: str) -> LinkAccountView | None:
    """None on a venue that is not linked."""
    if not client.d.venue_link:
        return None
    link = client.chain.contract("VenueLink", client.d.venue_link)
    applied = link.functions.appliedCertificate(checksum(address)).call()
    return LinkAccountView(
        sequence=int(applied[0]),
        issued_at=int(applied[1]),
        pledged_usd=int(applied[7]) / WAD,
        held=pledges_of(client.chain, client.d.venue_link, address),
    )


def account_view(client: Client, address: str) -> AccountView:
    d = client.d
    account = checksum(address)
    raw = client.account(account)
    prices = {a.id: _price(client, a.id) for a in d.assets}
    balances = {c.id: client.balance(account, c.symbol) for c in d.collaterals[1:]}
    positions = {m.id: client.position(account, m.id) for m in d.markets}
    collaterals = {
        c.id: CollateralParams(int(c.oracle_asset or 0), c.weight_bps, c.decimals)
        for c in d.collaterals[1:]
    }
    markets = {m.id: MarketParams(m.oracle_asset, m.im_bps, m.mm_bps) for m in d.markets}
    known = {i: p for i, p in prices.items() if p is not None}
    static = health(
        AccountState(raw["cash_wad"], balances, {i: s for i, s in positions.items() if s}),
        collaterals,
        markets,
        known,
    )
    h = client.health(account)
    mask = 0
    for mid, size in positions.items():
        if size:
            mask |= 1 << markets[mid].oracle_asset
    args = (
        account,
        raw["nonce"],
        mask,
        # One current price per asset of the mask, ascending asset id.
        [prices[a] or 0 for a in range(mask.bit_length()) if mask >> a & 1],
        static.initial_margin_wad,
        static.maintenance_margin_wad,
    )
    attested = certified = False
    inner: tuple[bool, int, int] = (False, static.initial_margin_wad, static.maintenance_margin_wad)
    if d.attestation_verifier and mask:
        verifier = client.chain.contract("AttestationVerifier", d.attestation_verifier)
        ok, im, mm = verifier.functions.requirementInForce(*args).call()
        inner = attested, _, _ = (bool(ok), int(im), int(mm))
    if d.venue_link and mask:
        # The link answers its certificate when one is in force, else what its inner verifier
        # (the one above) answers: a different answer is the certificate's.
        link = client.chain.contract("VenueLink", d.venue_link)
        ok, im, mm = link.functions.requirementInForce(*args).call()
        certified = bool(ok) and (bool(ok), int(im), int(mm)) != inner
        attested = attested and not certified
    static_mm = static.maintenance_margin_wad
    scale = h.maintenance_margin_wad / static_mm if static_mm else 1.0
    views = []
    for m in d.markets:
        size = positions[m.id]
        if not size:
            continue
        price = prices[m.oracle_asset] or 0
        # Equity moves by the position (and collateral priced by the same asset) per unit of
        # price; MM by |size| × the market's rate, scaled as the margin in force is.
        exposure = size + sum(
            balances[c] * 10 ** (18 - p.decimals) * p.weight_bps // 10_000
            for c, p in collaterals.items()
            if p.oracle_asset == m.oracle_asset
        )
        slope = exposure - abs(size) * m.mm_bps / 10_000 * scale
        gap = h.maintenance_margin_wad - h.equity_wad
        liq = price / WAD + gap / slope if slope else None
        views.append(
            PositionView(
                m.symbol,
                size / WAD,
                price / WAD,
                abs(size) * price / WAD**2,
                liq if liq is not None and liq > 0 else None,
            )
        )
    return AccountView(
        account,
        raw["cash_wad"] / WAD,
        {d.collaterals[c].symbol: b / 10 ** d.collaterals[c].decimals for c, b in balances.items()},
        views,
        h.equity_wad / WAD,
        h.initial_margin_wad / WAD,
        h.maintenance_margin_wad / WAD,
        static.initial_margin_wad / WAD,
        static.maintenance_margin_wad / WAD,
        attested,
        # `static` counts no funding: the contract's equity is lower by exactly what is owed.
        (static.equity_wad - h.equity_wad) / WAD if len(known) == len(prices) else None,
        certified,
    )


def _price(client: Client, asset_id: int) -> int | None:
    price, status = client.router.functions.tryPriceE18(asset_id).call()
    return int(price) if status == 0 else None


@dataclass(frozen=True)
class FeedView:
    symbol: str
    price_usd: float
    status: str
    age_s: int
    heartbeat_s: int


@dataclass(frozen=True)
class StatusView:
    chain_id: int
    block: int
    feeds: list[FeedView]
    markets: list[tuple[str, int, int]]  # symbol, IM bps, MM bps
    signers: list[str]
    threshold: int
    insurance_fund_usd: float
    deficit_usd: float
    paused: bool
    accounts: int
    with_positions: int
    below_mm: list[str]


def status_view(client: Client) -> StatusView:
    d, chain = client.d, client.chain
    head = chain.w3.eth.get_block("latest")
    now = int(head["timestamp"])
    feeds = []
    for a in d.assets:
        price, status = client.router.functions.tryPriceE18(a.id).call()
        updated_at = int(client.feeds[a.symbol].functions.latestRoundData().call()[3])
        heartbeat = int(client.router.functions.feedConfig(a.id).call()[1])
        feeds.append(
            FeedView(a.symbol, int(price) / WAD, PRICE_STATUS[status], now - updated_at, heartbeat)
        )
    signers: list[str] = []
    threshold = 0
    if d.attestation_verifier:
        verifier = chain.contract("AttestationVerifier", d.attestation_verifier)
        signers = [s for s in d.engine_signers if verifier.functions.isSigner(s).call()]
        threshold = int(verifier.functions.threshold().call())
    mirror = AccountMirror(chain, d.clearinghouse, d.insurance_fund, d.block)
    mirror.sync(int(head["number"]))
    open_accounts = [a for a, s in mirror.accounts.items() if s.has_positions]
    below = [a for a in open_accounts if client.ch.functions.isLiquidatable(a).call()]
    return StatusView(
        chain.chain_id,
        int(head["number"]),
        feeds,
        [(m.symbol, m.im_bps, m.mm_bps) for m in d.markets],
        signers,
        threshold,
        client.health(d.insurance_fund).equity_wad / WAD,
        int(client.ch.functions.deficitWad().call()) / WAD,
        bool(client.ch.functions.paused().call()),
        len(mirror.accounts),
        len(open_accounts),
        below,
    )
