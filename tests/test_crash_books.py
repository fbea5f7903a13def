"""The crash run of issue 10 as a test: 30 accounts, ETH down 40% in ten steps with its feed stale
every other step, every account withdrawing what it may, the keeper and the shipped backstop
running. At every step, once they have acted, the books hold: quote held ≥ Σ claims − booked
deficit (SPEC I25, I31, I32, S6)."""

from __future__ import annotations

from dataclasses import dataclass

from helpers import fund, make_stale, send_fast, try_send, usdc

from offchain.backstop import Backstop, matcher_hedge
from offchain.chain.client import Client, wad
from offchain.keeper import Keeper
from offchain.ops.backstop import ChainWire, contracts_of, positions_from_events

E18 = 10**18
ETH = 0
TRADERS = 30
STEPS = 10
START_USD = 3_000
FALL_BPS = 4_000


@dataclass(frozen=True)
class Books:
    held_wad: int
    claims_wad: int
    deficit_wad: int
    fund_equity_wad: int

    @property
    def slack_wad(self) -> int:
        """held − (claims − deficit): never negative (I25)."""
        return self.held_wad - self.claims_wad + self.deficit_wad


def books(system: Client, accounts: list[str]) -> Books:
    held = system.tokens["USDC"].functions.balanceOf(system.ch.address).call() * 10**12
    claims = sum(max(system.health(a).equity_wad, 0) for a in accounts)
    return Books(
        held,
        claims,
        system.ch.functions.deficitWad().call(),
        system.health(system.d.insurance_fund).equity_wad,
    )


def open_book(system: Client, traders: list[str], maker: str) -> None:
    """Seeded: 5,000 to 9,000 USDC each, 2x to 9x, every sixth account short."""
    fund(system, maker, "USDC", usdc(50_000_000))
    for i, trader in enumerate(traders):
        deposit = 5_000 + 1_000 * (i % 5)
        fund(system, trader, "USDC", usdc(deposit))
        size = wad(deposit) * (2 + i % 8) // START_USD
        side = -1 if i % 6 == 5 else 1
        send_fast(
            system.chain,
            system.fn("settleTrade", ETH, trader, maker, side * size, system.price_e18("ETH")),
            system.d.matcher,
        )


def withdraw_what_it_may(system: Client, account: str) -> bool:
    """Everything above initial margin (all of it without positions); fails while a price it
    needs is unusable, as the contract refuses (I5)."""
    h = system.health(account)
    free_units = (h.equity_wad - h.initial_margin_wad) // 10**12 - 1
    if free_units <= 0:
        return False
    fn = system.fn("withdraw", 0, free_units, account)
    return try_send(system.chain, fn, account)


def test_crash__forty_percent_in_ten_steps_with_stale_feeds__assets_cover_claims_less_deficit(
    system: Client, maker: str, keeper: str, others: list[str]
) -> None:
    # I25, I31, I32, S6: the run. Without the backstop the fund keeps the absorbed longs
    # into the fall and claims go unbacked; with it, every step's books balance.
    traders, backstop_account = others[:TRADERS], others[TRADERS]
    everyone = [*traders, maker, keeper, backstop_account]
    open_book(system, traders, maker)
    fund(system, backstop_account, "USDC", usdc(2_000_000))
    k = Keeper(system, keeper)
    backstop = Backstop(
        system.chain,
        system.d,
        backstop_account,
        ChainWire(system.chain, contracts_of(system.d), backstop_account),
        hedge=matcher_hedge(system.chain, system.d, backstop_account, maker),
        accounts=positions_from_events(system.chain, system.d),
    )
    liquidations = takes = withdrawals = 0
    trail: list[Books] = []
    for step in range(1, STEPS + 1):
        if step % 2:
            make_stale(system, "ETH")  # no new round: the feed goes stale, the price lags
        else:
            usd = START_USD * (10_000 - FALL_BPS * step // STEPS) // 10_000
            send_fast(
                system.chain, system.feeds["ETH"].functions.setAnswer(usd * 10**8), system.d.owner
            )
        withdrawals += sum(withdraw_what_it_may(system, t) for t in traders)
        for _ in range(5):  # the keeper drains what is liquidatable, one round per block
            done = k.step()
            liquidations += len(done)
            if not done:
                break
        takes += len(backstop.round().taken)
        trail.append(books(system, everyone))
        assert trail[-1].slack_wad >= 0, f"step {step}: {trail[-1]}"

    end, low = trail[-1], min(b.slack_wad for b in trail)
    print(
        f"\ncrash books: {liquidations} liquidations, {takes} backstop takes, {withdrawals} "
        f"withdrawals; end: held ${end.held_wad / E18:,.2f}, claims ${end.claims_wad / E18:,.2f}, "
        f"deficit ${end.deficit_wad / E18:,.2f}, fund equity ${end.fund_equity_wad / E18:,.2f}, "
        f"slack ${end.slack_wad / E18:,.2f}; lowest slack ${low / E18:,.2f}"
    )
    assert liquidations > 0
    assert takes > 0
    assert system.position(system.d.insurance_fund, "ETH-PERP") == 0
