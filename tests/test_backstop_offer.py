"""The insurance fund's standing offer (SPEC I31, issue 10 item 2): anyone takes over what the fund
absorbed at the oracle price less a bounded discount, through the clearinghouse's trade rules."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import assert_revert, fund, fund_absorbs, usdc

from offchain.chain.client import Client, wad
from offchain.errors import ContractRevert

E18 = 10**18
ETH = 0
BPS = 10_000


def offer_contract(system: Client) -> Any:
    assert system.d.backstop_offer is not None
    return system.chain.contract("BackstopOffer", system.d.backstop_offer)


@pytest.mark.parametrize("long", [True, False], ids=["fund_long", "fund_short"])
def test_take__part_of_the_funds_position__at_the_discounted_oracle_price(
    system: Client, trader: str, maker: str, keeper: str, others: list[str], long: bool
) -> None:
    # I31: the taker takes 4 of the fund's 10 ETH at the oracle price less 1% in its favour
    # (a buy below, a sell above, rounded for the fund); the fund's position moves toward zero
    # by exactly that, and its equity falls by the discount on what was taken, no more.
    offer, taker, fund_account = offer_contract(system), others[0], system.d.insurance_fund
    held = fund_absorbs(system, trader, maker, keeper, long)
    assert held == (wad(10) if long else -wad(10))
    fund(system, taker, "USDC", usdc(10_000))
    oracle = system.price_e18("ETH")
    discount = offer.functions.discountBps().call()
    # A buy rounds up, a sell down: in the fund's favour.
    price = -(-oracle * (BPS - discount) // BPS) if long else oracle * (BPS + discount) // BPS
    assert tuple(offer.functions.offer(ETH).call()) == (held, price)
    fund_equity = system.health(fund_account).equity_wad

    receipt = system.chain.send(offer.functions.take(ETH, wad(4), price), taker, "take")

    taken = next(e.args for e in system.events(receipt) if e.name == "BackstopTaken")
    delta = wad(4) if long else -wad(4)
    assert taken == {
        "marketId": ETH,
        "taker": taker,
        "takerSizeDelta": delta,
        "priceE18": price,
        "oraclePriceE18": oracle,
        "discountBps": discount,
    }
    trade = next(e.args for e in system.events(receipt) if e.name == "TradeSettled")
    assert (trade["maker"], trade["makerSizeAfter"]) == (fund_account, held - delta)
    assert system.position(taker, "ETH-PERP") == delta
    cost = abs(delta) * abs(oracle - price) // E18
    assert fund_equity - system.health(fund_account).equity_wad == cost


def test_take__more_than_the_fund_holds__reverts_offer_exceeded(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # I31: the fund's side only reduces; taking past zero would turn it around.
    offer = offer_contract(system)
    held = fund_absorbs(system, trader, maker, keeper, True)
    fund(system, others[0], "USDC", usdc(100_000))
    with pytest.raises(ContractRevert) as e:
        system.chain.send(offer.functions.take(ETH, held + 1, 2**256 - 1), others[0], "take")
    assert_revert(e.value, "OfferExceeded", marketId=ETH, size=held + 1, offeredSize=held)


def test_take__nothing_held__reverts_nothing_offered(system: Client, others: list[str]) -> None:
    offer = offer_contract(system)
    with pytest.raises(ContractRevert) as e:
        system.chain.send(offer.functions.take(ETH, wad(1), 2**256 - 1), others[0], "take")
    assert_revert(e.value, "NothingOffered", marketId=ETH)


def test_take__price_above_the_takers_limit__reverts_price_beyond_limit(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    offer = offer_contract(system)
    fund_absorbs(system, trader, maker, keeper, True)
    fund(system, others[0], "USDC", usdc(10_000))
    _, price = offer.functions.offer(ETH).call()
    with pytest.raises(ContractRevert) as e:
        system.chain.send(offer.functions.take(ETH, wad(1), price - 1), others[0], "take")
    assert_revert(e.value, "PriceBeyondLimit", priceE18=price, limitPriceE18=price - 1)


def test_take__taker_without_margin__reverts_insufficient_margin(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # The taker's side is an ordinary trade side: it needs initial margin after (I5).
    offer = offer_contract(system)
    fund_absorbs(system, trader, maker, keeper, True)
    fund(system, others[0], "USDC", usdc(100))
    with pytest.raises(ContractRevert) as e:
        system.chain.send(offer.functions.take(ETH, wad(4), 2**256 - 1), others[0], "take")
    assert_revert(e.value, "InsufficientMargin", account=others[0])


def test_set_discount__above_the_hard_bound__reverts_discount_too_large(system: Client) -> None:
    offer = offer_contract(system)
    with pytest.raises(ContractRevert) as e:
        system.chain.send(offer.functions.setDiscount(501), system.d.owner, "set discount")
    assert_revert(e.value, "DiscountTooLarge", discountBps=501, maxDiscountBps=500)


def test_set_discount__not_the_owner__reverts_unauthorized(
    system: Client, others: list[str]
) -> None:
    offer = offer_contract(system)
    with pytest.raises(ContractRevert) as e:
        system.chain.send(offer.functions.setDiscount(10), others[0], "set discount")
    assert_revert(e.value, "OwnableUnauthorizedAccount", account=others[0])


def test_set_discount__by_the_owner__prices_takes_at_the_new_discount(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    offer = offer_contract(system)
    receipt = system.chain.send(offer.functions.setDiscount(25), system.d.owner, "set discount")
    assert next(e.args for e in system.events(receipt) if e.name == "DiscountSet") == {
        "discountBps": 25
    }
    fund_absorbs(system, trader, maker, keeper, True)
    oracle = system.price_e18("ETH")
    assert offer.functions.offer(ETH).call()[1] == -(-oracle * (BPS - 25) // BPS)
