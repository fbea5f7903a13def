"""A development venue: what a trader does on a deployment whose mocks and matcher we hold.

A real venue matches two traders off-chain and its matcher settles the trade. Here the matcher
registered by `marginsync deploy` (on Anvil an unlocked account; in a test-network rehearsal the
operator's key) settles every trade at the oracle price against one development counterparty,
`DEV_MAKER`: an address derived from a public string that never sends a transaction, so it needs
no key, only collateral, which the deployer deposits for it (`deposit` may credit any account).

`populate` opens the lab's seeded trader population (`lab.population`) the same way, so a local
chain holds accounts the engine attests and the keeper liquidates once prices move.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eth_utils import keccak

from offchain.attest import address_of
from offchain.chain import checksum
from offchain.chain.client import MAX_UINT, Client, wad
from offchain.errors import ConfigError
from offchain.lab.population import TraderPlan, maker_capital_usd, trader_population
from offchain.models import BPS, WAD, to_units

DEV_MAKER = address_of(keccak(text="marginsync dev maker"))
# The maker keeps this multiple of a trade's initial margin free before it takes the trade.
MAKER_HEADROOM = 3


def trader_address(seed: int, index: int) -> str:
    """A populated trader: an address only (its trades are settled by the matcher)."""
    return address_of(keccak(text=f"marginsync trader {seed} {index}"))


def require_signer(client: Client, address: str, role: str, fix: str) -> str:
    """`address` if this process can send from it (a local key or an unlocked node account)."""
    if checksum(address) not in client.chain.accounts:
        raise ConfigError(f"cannot send as the {role} {checksum(address)}: no key for it", fix)
    return checksum(address)


def credit(client: Client, deposits: Sequence[tuple[str, str, int]]) -> None:
    """The deployer mints the mock tokens and deposits `(account, symbol, raw amount)` for each
    account: one mint and one approval per token, then one deposit per account."""
    d = client.d
    owner = require_signer(
        client, d.owner, "deployer", "run this with the deployer's key in MARGINSYNC_PRIVATE_KEY"
    )
    for symbol in dict.fromkeys(s for _, s, _ in deposits):
        token = client.tokens[d.collateral(symbol).symbol]
        total = sum(a for _, s, a in deposits if s == symbol)
        client.chain.send(token.functions.mint(owner, total), owner, f"mint {symbol}")
        client.chain.send(token.functions.approve(client.ch.address, MAX_UINT), owner, "approve")
    for account, symbol, amount in deposits:
        c = d.collateral(symbol)
        client.chain.send(
            client.ch.functions.deposit(checksum(account), c.id, amount),
            owner,
            f"deposit {symbol} for {account[:10]}",
        )


def oracle_price_e18(client: Client, market: str | int) -> int:
    return client.price_e18(client.d.asset(client.d.market(market).oracle_asset).symbol)


def trade(client: Client, trader: str, market: str | int, size: float | str) -> int:
    """`trader` buys (size > 0) or sells `size` base units from the dev maker at the oracle
    price; returns the price. The maker is topped up first if it lacks the margin."""
    m = client.d.market(market)
    matcher = _matcher(client)
    size_wad = wad(size)
    if size_wad == 0:
        raise ConfigError(f"trade size {size} rounds to zero", "trade at least 1e-18")
    price = oracle_price_e18(client, m.id)
    need_wad = MAKER_HEADROOM * abs(size_wad) * price * m.im_bps // (WAD * BPS)
    h = client.health(DEV_MAKER)
    free_wad = h.equity_wad - h.initial_margin_wad
    if free_wad < need_wad:
        quote = client.d.collaterals[0]
        usd = (need_wad - free_wad) // WAD + 1_000_000
        credit(client, [(DEV_MAKER, quote.symbol, to_units(usd, quote.decimals))])
    client.trade(m.id, trader, DEV_MAKER, size_wad, price, matcher=matcher)
    return price


def _matcher(client: Client) -> str:
    return require_signer(
        client,
        client.d.matcher,
        "matcher",
        "trades settle through the development venue only where the deploy registered a "
        "matcher you hold (a local chain, or a rehearsal deployed with your key)",
    )


@dataclass(frozen=True)
class Populated:
    traders: list[str]
    positions: int


def populate(
    client: Client, seed: int, count: int, progress: Callable[[str], None] = lambda _: None
) -> Populated:
    """Deposits for and opens the lab's population of `count` traders drawn from `seed`."""
    matcher = _matcher(client)
    plans = trader_population(seed, count)
    traders = [trader_address(seed, i) for i in range(count)]
    taken = [t for t in traders if client.account(t)["nonce"] or client.health(t).equity_wad]
    if taken:
        raise ConfigError(
            f"seed {seed} was populated on this deployment already ({taken[0]} has an account)",
            "pick another --seed",
        )
    quote = client.d.collaterals[0]
    deposits = [(DEV_MAKER, quote.symbol, to_units(maker_capital_usd(plans), quote.decimals))]
    for trader, plan in zip(traders, plans, strict=True):
        deposits.append((trader, *_collateral(client, plan)))
    progress(f"depositing for {count} traders and the dev maker")
    credit(client, deposits)
    progress("opening positions against the dev maker at the oracle price")
    positions = 0
    for trader, plan in zip(traders, plans, strict=True):
        # Leverage on the collateral's counted (haircut) value, as the lab sizes it.
        equity_wad = client.health(trader).equity_wad
        for leg in plan.legs:
            price = oracle_price_e18(client, leg.market)
            size_wad = leg.side * (equity_wad * round(leg.leverage * BPS) // BPS) * WAD // price
            client.trade(leg.market, trader, DEV_MAKER, size_wad, price, matcher=matcher)
            positions += 1
    return Populated(traders, positions)


def _collateral(client: Client, plan: TraderPlan) -> tuple[str, int]:
    """The plan's collateral in raw token units, valued at the oracle price."""
    c = client.d.collateral(plan.collateral)
    if c.oracle_asset is None:
        return c.symbol, to_units(plan.collateral_usd, c.decimals)
    tokens = plan.collateral_usd * WAD / client.price_e18(client.d.asset(c.oracle_asset).symbol)
    return c.symbol, to_units(f"{tokens:.6f}", c.decimals)
