"""The trader's and the operator's read commands: deposit, withdraw, trade, account, populate,
status, and the `backstop` service (`ops/backstop.py`). `offchain.cli` registers them; each is
thin wiring over `venue` and `views`."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from offchain.chain.client import Client, connect
from offchain.errors import ConfigError
from offchain.settings import Settings

console = Console(soft_wrap=True)
# Anvil's unlocked accounts 0-3 hold the deploy's roles (owner, matcher, guardian, insurance
# fund) and the keeper takes the last one: a trader on a local chain defaults to account 4.
LOCAL_TRADER_INDEX = 4


def _client(ctx: click.Context) -> Client:
    settings: Settings = ctx.obj
    return Client(*connect(settings))


def trader_account(ctx: click.Context, client: Client, given: str | None) -> str:
    """--account, else the MARGINSYNC_PRIVATE_KEY account, else Anvil's account 4."""
    from offchain.ops.venue import require_signer

    settings: Settings = ctx.obj
    accounts = client.chain.accounts
    if given or settings.private_key:
        address = given or accounts[0]
    elif len(accounts) > LOCAL_TRADER_INDEX:
        address = accounts[LOCAL_TRADER_INDEX]
    else:
        raise ConfigError(
            "no trader account: no MARGINSYNC_PRIVATE_KEY and the node unlocks no account 4",
            "set MARGINSYNC_PRIVATE_KEY to the trader's key, or name one with --account",
        )
    return require_signer(
        client,
        address,
        "trader",
        "set MARGINSYNC_PRIVATE_KEY to the trader's key, or name an unlocked --account",
    )


def account_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--account",
        default=None,
        metavar="ADDRESS",
        help="Trade as this account [default: MARGINSYNC_PRIVATE_KEY's, else Anvil account 4].",
    )(f)


@click.command()
@click.argument("amount")
@click.argument("symbol", default="USDC")
@account_option
@click.option("--mint", is_flag=True, help="Mint the mock token to the wallet first (faucet).")
@click.pass_context
def deposit(ctx: click.Context, amount: str, symbol: str, account: str | None, mint: bool) -> None:
    """Deposit AMOUNT of collateral SYMBOL (default USDC) from the trader's wallet."""
    from offchain.chain.client import units

    client = _client(ctx)
    trader = trader_account(ctx, client, account)
    c = client.d.collateral(symbol)
    if mint:
        token = client.tokens[c.symbol]
        raw = units(positive_amount(amount), c.decimals)
        client.chain.send(token.functions.mint(trader, raw), trader, f"mint {c.symbol}")
    credited = client.deposit(trader, c.symbol, positive_amount(amount))
    console.print(f"deposited {credited / 10**c.decimals:,.6g} {c.symbol} for {trader}")


@click.command()
@click.argument("amount")
@click.argument("symbol", default="USDC")
@account_option
@click.pass_context
def withdraw(ctx: click.Context, amount: str, symbol: str, account: str | None) -> None:
    """Withdraw AMOUNT of collateral SYMBOL (default USDC) to the trader's wallet."""
    client = _client(ctx)
    trader = trader_account(ctx, client, account)
    c = client.d.collateral(symbol)
    client.withdraw(trader, c.symbol, positive_amount(amount))
    console.print(f"withdrew {amount} {c.symbol} to {trader}")


@click.command()
@click.argument("market")
@click.argument("side", type=click.Choice(["buy", "sell"]))
@click.argument("size")
@account_option
@click.pass_context
def trade(ctx: click.Context, market: str, side: str, size: str, account: str | None) -> None:
    """Buy or sell SIZE base units of MARKET at the oracle price (development venue).

    MARKET is a symbol such as ETH-PERP. The deploy's matcher settles the trade against a
    development counterparty that the deployer funds."""
    from offchain.ops.venue import trade as settle

    client = _client(ctx)
    trader = trader_account(ctx, client, account)
    m = client.d.market(market)
    signed = positive_amount(size) if side == "buy" else f"-{positive_amount(size)}"
    price = settle(client, trader, m.id, signed)
    console.print(f"{side} {size} {m.symbol} @ {price / 1e18:,.2f} for {trader}")
    _print_account(client, trader)


@click.command()
@click.argument("address", required=False)
@click.pass_context
def account(ctx: click.Context, address: str | None) -> None:
    """Collateral, positions, equity, margin in force (attested or static), health and
    liquidation prices of ADDRESS [default: the trader account]."""
    client = _client(ctx)
    _print_account(client, address or trader_account(ctx, client, None))


@click.command()
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=7, show_default=True)
@click.option("--traders", type=click.IntRange(1, 250), default=50, show_default=True)
@click.pass_context
def populate(ctx: click.Context, seed: int, traders: int) -> None:
    """Open the lab's seeded trader population (directional and hedged, 1.2x-9.5x) against the
    development counterparty, so the engine has accounts to attest and the keeper to watch."""
    from offchain.ops.venue import populate as run

    client = _client(ctx)
    done = run(client, seed, traders, progress=lambda s: console.print(f"populate: {s}"))
    console.print(f"populate: {len(done.traders)} traders, {done.positions} positions open")


@click.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """The deployment at a glance: prices and their freshness, markets, signers and threshold,
    insurance fund, deficit, accounts below maintenance margin."""
    from offchain.ops.views import status_view

    v = status_view(_client(ctx))
    console.print(f"chain {v.chain_id}, block {v.block}" + (", PAUSED" if v.paused else ""))
    feeds = Table("asset", "price", "status", "age", "heartbeat")
    for f in v.feeds:
        feeds.add_row(f.symbol, f"{f.price_usd:,.2f}", f.status, f"{f.age_s}s", f"{f.heartbeat_s}s")
    console.print(feeds)
    console.print(
        "markets: " + ", ".join(f"{s} IM {i / 100:g}% MM {m / 100:g}%" for s, i, m in v.markets)
    )
    console.print(
        f"engine signers: {v.threshold} of {len(v.signers)} ({', '.join(v.signers) or 'none'})"
    )
    console.print(f"insurance fund ${v.insurance_fund_usd:,.2f}, deficit ${v.deficit_usd:,.2f}")
    console.print(
        f"accounts: {v.accounts} ({v.with_positions} with positions); "
        f"{len(v.below_mm)} below maintenance margin"
        + (
            f": {', '.join(v.below_mm[:5])}" + (" …" if len(v.below_mm) > 5 else "")
            if v.below_mm
            else ""
        )
    )


def _print_account(client: Client, address: str) -> None:
    from offchain.ops.views import account_view, link_account_view

    v = account_view(client, address)
    quote = client.d.collaterals[0]
    held = ", ".join(f"{amount:,.6g} {sym}" for sym, amount in v.collateral.items() if amount)
    console.print(f"account {v.address}: cash ${v.cash_usd:,.2f}" + (f", {held}" if held else ""))
    if v.positions:
        table = Table("market", "size", "price", "notional", "liquidation price")
        for p in v.positions:
            liq = f"{p.liquidation_price_usd:,.2f}" if p.liquidation_price_usd else "-"
            table.add_row(
                p.market, f"{p.size:+,.6g}", f"{p.price_usd:,.2f}", f"{p.notional_usd:,.2f}", liq
            )
        console.print(table)
    if v.funding_owed_usd:
        side = "owes" if v.funding_owed_usd > 0 else "is owed"
        console.print(f"funding: {side} ${abs(v.funding_owed_usd):,.2f} (counted in equity)")
    source = "certified" if v.certified else "attested" if v.attested else "static"
    health = f"{v.health:.3f}" if v.health is not None else "-"
    console.print(
        f"equity ${v.equity_usd:,.2f}; IM ${v.im_usd:,.2f}, MM ${v.mm_usd:,.2f} ({source}; static "
        f"IM ${v.static_im_usd:,.2f}, MM ${v.static_mm_usd:,.2f}); health {health} (equity / MM)"
    )
    link = link_account_view(client, v.address)
    if link is not None:
        last = f"certificate {link.sequence}" if link.sequence else "no certificate yet"
        in_force = " (in force)" if v.certified else ""
        held = ", ".join(
            f"#{p.pledge_id} for venue {p.to_venue} {p.amount / 10**quote.decimals:,.6g} "
            f"{quote.symbol} {p.state.name.lower()}"
            for p in link.held
        )
        console.print(
            f"link: {last}{in_force}, pledges counted here ${link.pledged_usd:,.2f}; "
            f"pledged from here: {held or 'none'}"
        )


def positive_amount(text: str) -> str:
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value <= 0:
        raise ConfigError(f"{text!r} is not a positive amount", "give a number such as 1000 or 0.5")
    return text


def _backstop() -> click.Command:
    from offchain.ops.backstop import backstop

    return backstop


COMMANDS = (deposit, withdraw, trade, account, populate, status, _backstop())
