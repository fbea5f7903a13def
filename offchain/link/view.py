"""Certificates from mirrors: what the committee signs for an account, built from each venue's
chain state and the prices the certificate states, the same way by the engine that proposes it
and by every member that checks it (X1, X2, X7).

Per venue the inputs are the product's account mirror (positions, position nonce, and the
equity and static requirement the one health function computes at the stated prices and at the
certificate's issue time) and the venue's pledge ledger (the LinkMirror: pledge nonces and the
pledges held there). `LinkView.book` runs the cross-venue model (offchain/risk/crossvenue.py)
once over many accounts; `LinkBook.certificate` reads one account's certificate out of it.

A member never trusts a proposed certificate: it gets only the inputs that are not chain state
(`CertificateProposal`: account, sequence, issue time, prices) and rebuilds the rest from its
own mirrors (`LinkView.rebuild`); it signs only if the digest is the one proposed. Everything is
deterministic: each account's row of the model depends on that account's state and prices
alone, so a certificate built in a batch of 200 accounts equals the one rebuilt alone.

The price mask of a venue's entry is the oracle assets of the account's markets there AND of
its non-quote collateral there: the contract checks the markets' prices against its oracle
(band), and the collateral's prices make the equity reproducible.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from offchain.chain.bindings import Chain
from offchain.errors import ConfigError, SigningRefused
from offchain.link.ledger import PledgeState, VenueMirror
from offchain.link.messages import (
    Certificate,
    VenueView,
    link_id,
    pledged_wad,
)
from offchain.models import Deployment
from offchain.risk.crossvenue import (
    WAD,
    Allocation,
    Book,
    CrossVenueParams,
    GlobalView,
    allocate,
    global_view,
    wad_array,
)

Prices = Mapping[int, int]  # oracle asset id → price (1e18), one venue's


@dataclass(frozen=True)
class LinkedVenue:
    """One venue of the link, as a view reads it."""

    chain_id: int
    link: str  # its VenueLink
    mirror: VenueMirror  # its clearinghouse's accounts and its VenueLink's ledger
    quote_decimals: int
    market_of: Mapping[int, int]  # its market id → the link's common market index
    oracle_router: str
    assets: tuple[int, ...]  # its oracle asset ids

    @classmethod
    def of(cls, chain: Chain, d: Deployment, markets: Sequence[str]) -> LinkedVenue:
        """Venue `d` with a fresh mirror; `markets` are the link's common markets (by the
        symbol of their oracle asset)."""
        if d.venue_link is None:
            raise ConfigError(
                f"the deployment on chain {d.chain_id} has no venue link", "run deploy_link first"
            )
        return cls(
            d.chain_id,
            d.venue_link,
            VenueMirror(chain, d),
            d.collateral(0).decimals,
            {m.id: markets.index(d.asset(m.oracle_asset).symbol) for m in d.markets},
            d.oracle_router,
            tuple(a.id for a in d.assets),
        )


def common_markets(deployments: Sequence[Deployment]) -> list[str]:
    """The link's markets: every venue's underlyings (oracle asset symbols), sorted."""
    return sorted({d.asset(m.oracle_asset).symbol for d in deployments for m in d.markets})


def certificate_slot(account: str, sequence: int) -> int:
    """The one integer a member keys "one message per sequence" by: sequences are per account."""
    return int(account, 16) << 64 | sequence


@dataclass(frozen=True)
class CertificateProposal:
    """The inputs of a certificate that are not chain state: who, which sequence, when, each
    venue's prices (mask, prices ascending by asset id) in link order, and the pledges it
    withholds, (holder venue, pledge id), ACTIVE but left out because a move is under way (X5's
    phase 1: leaving a pledge out only ever tightens)."""

    account: str
    sequence: int
    issued_at: int
    prices: tuple[tuple[int, tuple[int, ...]], ...]
    blocks: tuple[int, ...]  # per venue, the block the proposer's mirror stood at
    withheld: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(
        cls, c: Certificate, blocks: Sequence[int], withheld: Collection[tuple[int, int]] = ()
    ) -> CertificateProposal:
        return cls(
            c.account,
            c.sequence,
            c.issued_at,
            stated_prices(c),
            tuple(blocks),
            tuple(sorted(withheld)),
        )

    def venue_prices(self) -> list[dict[int, int]]:
        return [dict(zip(assets_of(mask), prices, strict=True)) for mask, prices in self.prices]

    def as_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "sequence": self.sequence,
            "issued_at": self.issued_at,
            "prices": [[mask, list(prices)] for mask, prices in self.prices],
            "blocks": list(self.blocks),
            "withheld": [list(w) for w in self.withheld],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CertificateProposal:
        try:
            return cls(
                str(data["account"]),
                int(data["sequence"]),
                int(data["issued_at"]),
                tuple((int(m), tuple(int(p) for p in ps)) for m, ps in data["prices"]),
                tuple(int(b) for b in data["blocks"]),
                tuple(sorted((int(v), int(i)) for v, i in data.get("withheld", ()))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SigningRefused(f"malformed certificate proposal: {exc}", "") from exc


def stated_prices(c: Certificate) -> tuple[tuple[int, tuple[int, ...]], ...]:
    return tuple((v.price_asset_mask, v.prices_e18) for v in c.venues)


def assets_of(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


@dataclass(frozen=True)
class Built:
    """A certificate, and the pledges it counted (holder venue, pledge id): what a release or a
    move needs to know of a certificate a venue holds (offchain/link/orders.py)."""

    certificate: Certificate
    counted: frozenset[tuple[int, int]]


@dataclass(frozen=True)
class LinkBook:
    """One risk pass over some accounts' whole books (rows in `accounts` order)."""

    accounts: tuple[str, ...]
    book: Book
    view: GlobalView
    allocation: Allocation
    masks: tuple[tuple[int, ...], ...]  # (A, V) price asset masks
    position_nonces: tuple[tuple[int, ...], ...]
    pledge_nonces: tuple[tuple[int, ...], ...]
    counted: tuple[frozenset[tuple[int, int]], ...]  # per account: (holder venue, pledge id)

    def row(self, account: str) -> int:
        return self.accounts.index(account)


class LinkView:
    """The link's venues as one holder of mirrors sees them, and the certificates they imply."""

    def __init__(
        self, link_id: bytes, venues: Sequence[LinkedVenue], params: CrossVenueParams
    ) -> None:
        self.link_id = link_id
        self.venues = list(venues)
        self.params = params
        self.n_markets = int(params.tiers.floor_usd.shape[0])

    @classmethod
    def connect(
        cls,
        chains: Sequence[Chain],
        deployments: Sequence[Deployment],
        params: CrossVenueParams | None = None,
    ) -> LinkView:
        """The linked venues `deployments` (link order) on `chains`, each with a fresh mirror
        (call `sync`), margined by `params` (default: the standard tiers on every market)."""
        markets = common_markets(deployments)
        venues = [LinkedVenue.of(c, d, markets) for c, d in zip(chains, deployments, strict=True)]
        return cls(
            link_id([v.chain_id for v in venues], [v.link for v in venues]),
            venues,
            params or CrossVenueParams.standard(len(markets)),
        )

    def sync(self) -> int:
        """Brings every venue's mirror to its chain's head; returns the events applied."""
        return sum(v.mirror.sync() for v in self.venues)

    def heads(self) -> tuple[int, ...]:
        """The block each venue's mirror stands at."""
        return tuple(v.mirror.next_block - 1 for v in self.venues)

    def sync_to(self, blocks: Sequence[int]) -> None:
        """Brings each venue's mirror at least to `blocks` (one per venue): a member reads the
        chain state a proposal was built from before it rebuilds it (a mirror never goes back:
        one already past it rebuilds from newer state, and refuses if that differs)."""
        if len(blocks) != len(self.venues):
            raise SigningRefused(
                f"the proposal names {len(blocks)} venues' blocks, the link has {len(self.venues)}",
                "",
            )
        for venue, block in zip(self.venues, blocks, strict=True):
            if venue.mirror.next_block <= block:
                venue.mirror.sync(to_block=block)

    def mask(self, v: int, account: str) -> int:
        venue = self.venues[v]
        state = venue.mirror.accounts.get(account)
        if state is None:
            return 0
        collateral = 0
        for asset_id, amount in state.balances.items():
            if amount:
                collateral |= 1 << venue.mirror.collaterals[asset_id].oracle_asset
        return venue.mirror.market_asset_mask(account) | collateral

    def book(
        self,
        accounts: Sequence[str],
        prices: Sequence[Prices],
        issued_at: int,
        withheld: Mapping[str, Collection[tuple[int, int]]] | None = None,
    ) -> LinkBook:
        """The model over `accounts` at each venue's `prices` (every asset their masks name) and
        block time `issued_at` (the funding their positions owe by then counts), leaving out
        the pledges `withheld` names per account. Raises `SigningRefused` when a price the book
        needs is not given."""
        left_out = withheld or {}
        n_acc, n_ven = len(accounts), len(self.venues)
        sizes = np.zeros((n_acc, n_ven, self.n_markets))
        equity = np.zeros((n_acc, n_ven), dtype=object)
        static_im = np.zeros((n_acc, n_ven), dtype=object)
        static_mm = np.zeros((n_acc, n_ven), dtype=object)
        pledged = np.zeros((n_acc, n_ven), dtype=object)
        prices_usd = np.zeros((n_ven, self.n_markets))
        masks, position_nonces, pledge_nonces, counted = [], [], [], []
        for v, venue in enumerate(self.venues):
            assets = {venue.mirror.markets[m].oracle_asset: c for m, c in venue.market_of.items()}
            for asset, price in prices[v].items():
                if asset in assets:
                    prices_usd[v, assets[asset]] = price / WAD
        for a, account in enumerate(accounts):
            row_masks, row_nonces, row_pledge_nonces = [], [], []
            row_counted: set[tuple[int, int]] = set()
            for v, venue in enumerate(self.venues):
                mask = self.mask(v, account)
                stated = {i: prices[v][i] for i in assets_of(mask) if i in prices[v]}
                missing = [asset for asset in assets_of(mask) if asset not in stated]
                if missing:
                    raise SigningRefused(
                        f"no price for assets {missing} of {account} on chain {venue.chain_id}",
                        "state a price for every asset the account holds there",
                    )
                state = venue.mirror.accounts.get(account)
                row_masks.append(mask)
                row_nonces.append(0 if state is None else state.nonce)
                row_pledge_nonces.append(venue.mirror.link.pledge_nonces.get(account, 0))
                # Pledges come from the wallet: an account may pledge where it never traded.
                for pledge_id, p in venue.mirror.link.pledges.items():
                    if (
                        p.account == account
                        and p.state is PledgeState.ACTIVE  # a RELEASING one counts nowhere (X3)
                        and (v, pledge_id) not in left_out.get(account, ())
                    ):
                        pledged[a, p.to_venue] += pledged_wad(p.amount, venue.quote_decimals)
                        row_counted.add((v, pledge_id))
                if state is None:
                    continue
                for market_id, size in state.positions.items():
                    sizes[a, v, venue.market_of[market_id]] += size / WAD
                h = venue.mirror.health(account, stated, now=issued_at)
                equity[a, v], static_im[a, v], static_mm[a, v] = (
                    h.equity_wad,
                    h.initial_margin_wad,
                    h.maintenance_margin_wad,
                )
            masks.append(tuple(row_masks))
            position_nonces.append(tuple(row_nonces))
            pledge_nonces.append(tuple(row_pledge_nonces))
            counted.append(frozenset(row_counted))
        book = Book(sizes, equity, static_im, static_mm, wad_array(pledged))
        view = global_view(book, prices_usd, self.params)
        return LinkBook(
            tuple(accounts),
            book,
            view,
            allocate(book, view),
            tuple(masks),
            tuple(position_nonces),
            tuple(pledge_nonces),
            tuple(counted),
        )

    def certificate(
        self, book: LinkBook, account: str, sequence: int, issued_at: int, prices: Sequence[Prices]
    ) -> Certificate:
        """`account`'s certificate out of `book` (built at `prices` and `issued_at`)."""
        a = book.row(account)
        return Certificate(
            link_id=self.link_id,
            account=account,
            sequence=sequence,
            issued_at=issued_at,
            global_equity_wad=int(book.view.equity_wad[a]),
            global_im_wad=int(book.view.im_wad[a]),
            global_mm_wad=int(book.view.mm_wad[a]),
            venues=tuple(
                VenueView(
                    chain_id=venue.chain_id,
                    link=venue.link,
                    position_nonce=book.position_nonces[a][v],
                    pledge_nonce=book.pledge_nonces[a][v],
                    im_wad=int(book.allocation.im_wad[a, v]),
                    mm_wad=int(book.allocation.mm_wad[a, v]),
                    pledged_wad=int(book.book.pledged_wad[a, v]),
                    price_asset_mask=book.masks[a][v],
                    prices_e18=tuple(prices[v][asset] for asset in assets_of(book.masks[a][v])),
                )
                for v, venue in enumerate(self.venues)
            ),
        )

    def built(
        self, book: LinkBook, account: str, sequence: int, issued_at: int, prices: Sequence[Prices]
    ) -> Built:
        """`account`'s certificate out of `book`, with the pledges it counted."""
        cert = self.certificate(book, account, sequence, issued_at, prices)
        return Built(cert, book.counted[book.row(account)])

    def rebuild(self, proposal: CertificateProposal) -> Built:
        """The certificate this view's own mirrors give for a proposal's inputs, read at (or
        past) the blocks the proposal was built at."""
        self.sync_to(proposal.blocks)
        prices = proposal.venue_prices()
        if len(prices) != len(self.venues):
            raise SigningRefused(
                f"the proposal prices {len(prices)} venues, the link has {len(self.venues)}", ""
            )
        withheld = {proposal.account: proposal.withheld}
        book = self.book([proposal.account], prices, proposal.issued_at, withheld)
        built = self.built(book, proposal.account, proposal.sequence, proposal.issued_at, prices)
        if stated_prices(built.certificate) != proposal.prices:
            raise SigningRefused(
                f"{proposal.account}'s price masks here are {book.masks[0]}, the proposal's "
                f"{[m for m, _ in proposal.prices]}",
                "the proposer's positions or collateral differ from this member's mirrors",
            )
        return built
