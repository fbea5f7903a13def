"""The `feed` command's inputs: starting prices given by the user or read from the oracle."""

from __future__ import annotations

from offchain.chain.client import Client
from offchain.errors import ConfigError, MarginsyncError
from offchain.models import Deployment


def parse_starts(starts: tuple[str, ...], d: Deployment) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in starts:
        sym, _, usd = item.partition("=")
        try:
            price = float(usd)
            symbol = d.asset(sym.strip()).symbol
        except (ValueError, KeyError, MarginsyncError):
            price, symbol = 0.0, ""
        if not symbol or not price > 0:
            known = ", ".join(a.symbol for a in d.assets)
            raise ConfigError(
                f"--start {item!r} is not SYMBOL=USD with a listed symbol and a positive price",
                f"e.g. --start ETH=3000 (symbols: {known})",
            )
        out[symbol] = price
    return out


def current_price_usd(client: Client, symbol: str) -> float:
    """The oracle's price, or the mock feed's last answer when the oracle refuses it."""
    try:
        return client.price_e18(symbol) / 10**18
    except MarginsyncError as exc:
        raise ConfigError(
            f"the oracle refuses {symbol}'s current price ({exc.cause})",
            f"give a starting price, e.g. --start {symbol}=2000",
        ) from exc
