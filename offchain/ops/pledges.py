"""The trader's pledges across linked venues (X3, X5): `marginsync pledge add | release |
rebalance-cap | list`, thin wiring over one VenueLink per venue.

A pledge locks quote tokens (the venue's settlement asset, $1 at full weight: the only asset a
pledge may be in) from the trader's WALLET in the VenueLink of the venue that holds them, in
favour of another venue of the link; clearinghouse balances never move. The committee counts it
in that venue's certificates. Taking it back is two-phase: `release` asks (phase 1), and only a
committee RELEASE order, signed once no certificate counts the pledge any more, pays it back.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from web3.contract import Contract

from offchain.chain import checksum
from offchain.chain.client import MAX_UINT, Client, units
from offchain.errors import ConfigError
from offchain.ops.commands import account_option, positive_amount, trader_account
from offchain.ops.venues import LinkRecord, Venue, open_venues, venue_index
from offchain.ops.views import pledges_of
from offchain.settings import Settings

console = Console(soft_wrap=True)


def link_contract(venue: Venue) -> Contract:
    return venue.chain.contract("VenueLink", venue.record.venue_link)


def pledge(venue: Venue, trader: str, to_venue: int, amount: int, *, mint: bool = False) -> int:
    """Locks `amount` quote units of `trader`'s wallet on `venue` in favour of venue `to_venue`;
    returns the pledge id. `mint`: the mock token's faucet first (development venues)."""
    chain, link = venue.chain, link_contract(venue)
    token = Client(chain, venue.deployment).tokens[venue.deployment.collaterals[0].symbol]
    if mint:
        chain.send(token.functions.mint(trader, amount), trader, "mint the quote token")
    if int(token.functions.allowance(trader, link.address).call()) < amount:
        chain.send(token.functions.approve(link.address, MAX_UINT), trader, "approve the link")
    receipt = chain.send(link.functions.pledge(to_venue, amount), trader, "pledge")
    (changed,) = [e for e in chain.events(receipt) if e.name == "PledgeChanged"]
    return int(changed.args["pledgeId"])


def request_release(venue: Venue, trader: str, pledge_id: int) -> None:
    """Phase 1 of a release (X3): the committee stops counting the pledge, then releases it."""
    venue.chain.send(
        link_contract(venue).functions.requestRelease(pledge_id), trader, "request release"
    )


def set_rebalance_cap(venue: Venue, trader: str, cap: int) -> None:
    """Lets the committee move up to `cap` quote units of the trader's pledges here (X5)."""
    venue.chain.send(
        link_contract(venue).functions.setRebalanceCap(cap), trader, "set the rebalance cap"
    )


# ---------------------------------------------------------------------------- commands

LINK_OPTION = click.option(
    "--link",
    "link_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The link file `marginsync deploy --venues N` wrote (deployments/link-<id>.json).",
)


def _venue(ctx: click.Context, link_path: Path, ref: str, option: str) -> tuple[LinkRecord, Venue]:
    settings: Settings = ctx.obj
    link = LinkRecord.load(link_path)
    index = venue_index(link, ref, option)
    return link, open_venues(link, settings, only=index)[0]


def _quote(venue: Venue, amount: str) -> tuple[int, str]:
    quote = venue.deployment.collaterals[0]
    raw = units(positive_amount(amount), quote.decimals)
    if raw == 0:
        raise ConfigError(f"{amount} {quote.symbol} rounds to zero", "pledge more")
    return raw, quote.symbol


@click.group("pledge")
def pledge_group() -> None:
    """Pledge quote tokens on one venue in favour of another venue of a link (X3, X5)."""


@pledge_group.command("add")
@click.argument("amount")
@click.option("--from-venue", required=True, help="Venue (index or chain id) holding the tokens.")
@click.option("--to-venue", required=True, help="Venue (index or chain id) the pledge counts for.")
@LINK_OPTION
@account_option
@click.option("--mint", is_flag=True, help="Mint the mock quote token to the wallet first.")
@click.pass_context
def add(
    ctx: click.Context,
    amount: str,
    from_venue: str,
    to_venue: str,
    link_path: Path,
    account: str | None,
    mint: bool,
) -> None:
    """Pledge AMOUNT of the quote token from the trader's wallet on --from-venue."""
    link, venue = _venue(ctx, link_path, from_venue, "--from-venue")
    target = venue_index(link, to_venue, "--to-venue")
    if target == venue.index:
        raise ConfigError(
            f"--from-venue and --to-venue are both venue {target}",
            "a pledge counts on another venue: name a different --to-venue",
        )
    trader = trader_account(ctx, Client(venue.chain, venue.deployment), account)
    raw, symbol = _quote(venue, amount)
    pledge_id = pledge(venue, trader, target, raw, mint=mint)
    console.print(
        f"pledge {pledge_id} on venue {venue.index} (chain {venue.record.chain_id}): {amount} "
        f"{symbol} of {trader} in favour of venue {target} "
        f"(chain {link.venues[target].chain_id})"
    )


@pledge_group.command("release")
@click.argument("pledge_id", type=click.IntRange(min=1))
@click.option("--venue", "venue_ref", required=True, help="Venue (index or chain id) holding it.")
@LINK_OPTION
@account_option
@click.pass_context
def release(
    ctx: click.Context, pledge_id: int, venue_ref: str, link_path: Path, account: str | None
) -> None:
    """Ask for PLEDGE_ID back (phase 1); the committee's RELEASE order pays it (phase 2)."""
    _, venue = _venue(ctx, link_path, venue_ref, "--venue")
    trader = trader_account(ctx, Client(venue.chain, venue.deployment), account)
    request_release(venue, trader, pledge_id)
    console.print(
        f"pledge {pledge_id} on venue {venue.index} is releasing: the committee pays it back "
        "once no certificate counts it"
    )


@pledge_group.command("rebalance-cap")
@click.argument("amount")
@click.option("--venue", "venue_ref", required=True, help="Venue (index or chain id).")
@LINK_OPTION
@account_option
@click.pass_context
def rebalance_cap(
    ctx: click.Context, amount: str, venue_ref: str, link_path: Path, account: str | None
) -> None:
    """Let the committee move up to AMOUNT of the trader's pledges on --venue (X5)."""
    _, venue = _venue(ctx, link_path, venue_ref, "--venue")
    trader = trader_account(ctx, Client(venue.chain, venue.deployment), account)
    raw, symbol = _quote(venue, amount)
    set_rebalance_cap(venue, trader, raw)
    console.print(f"the committee may move up to {amount} {symbol} of {trader}'s pledges there")


@pledge_group.command("list")
@click.argument("address", required=False)
@LINK_OPTION
@click.pass_context
def list_pledges(ctx: click.Context, address: str | None, link_path: Path) -> None:
    """ADDRESS's pledges on every venue of the link [default: the trader account]."""
    settings: Settings = ctx.obj
    link = LinkRecord.load(link_path)
    venues = open_venues(link, settings)
    first = venues[0]
    who = address or trader_account(ctx, Client(first.chain, first.deployment), None)
    table = Table("venue", "pledge", "for venue", "state", "amount")
    for venue in venues:
        decimals = venue.deployment.collaterals[0].decimals
        for row in pledges_of(venue.chain, venue.record.venue_link, who):
            table.add_row(
                str(venue.index),
                str(row.pledge_id),
                str(row.to_venue),
                row.state.name.lower(),
                f"{row.amount / 10**decimals:,.6g}",
            )
    console.print(f"pledges of {checksum(who)}")
    console.print(table)


COMMANDS = (pledge_group,)
