"""Certificates and orders are checked when built, and a link is deployed only from a sensible
venue list: each mistake is one line naming the field (no chain needed)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from offchain.attest import InvalidAttestation
from offchain.errors import ConfigError
from offchain.link.deploy import deploy_link, venue_list
from offchain.link.messages import Certificate, Order, OrderKind, VenueView

A = "0x" + "11" * 20
B = "0x" + "22" * 20
VIEW = VenueView(1, A, 0, 0, 10, 5, 0, 0b101, (3, 4))
CERT = Certificate(b"\x01" * 32, A, 1, 100, -5, 10, 5, (VIEW, VIEW))
ORDER = Order(b"\x01" * 32, 1, A, OrderKind.RELEASE, 1, 100)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: replace(VIEW, prices_e18=(3,)), "1 prices for 2 assets"),
        (lambda: replace(VIEW, pledge_nonce=2**64), "VenueView.pledge_nonce=18446744073709551616"),
        (lambda: replace(VIEW, link="0x1234"), "VenueView.link='0x1234' is not"),
        (lambda: replace(CERT, sequence=0), "Certificate.sequence=0 is outside 1..2^64-1"),
        (lambda: replace(CERT, link_id=b"\x01"), "Certificate.link_id must be 32 bytes"),
        (lambda: replace(CERT, global_equity_wad=2**255), "outside int256"),
        (lambda: replace(CERT, venues=()), "a certificate names 0 venues"),
        (lambda: replace(ORDER, kind=4), "Order.kind=4 is not RELEASE, CLAIM or MOVE"),
        (lambda: replace(ORDER, amount=-1), "Order.amount=-1 is outside"),
    ],
    ids=[
        "prices-off-mask",
        "nonce-too-big",
        "bad-link",
        "sequence-zero",
        "short-link-id",
        "equity-beyond-int256",
        "no-venues",
        "unknown-kind",
        "negative-amount",
    ],
)
def test_a_message_the_contract_would_refuse_fails_when_built_in_one_line(
    build: Any, message: str
) -> None:
    # Nothing is signed that a venue would refuse or hash differently.
    with pytest.raises(InvalidAttestation) as e:
        build()
    assert message in str(e.value)
    assert "\n" not in str(e.value)


class _Deployment:
    """What `venue_list` reads of a deployment."""

    def __init__(self, chain_id: int, insurance_fund: str) -> None:
        self.chain_id = chain_id
        self.insurance_fund = insurance_fund


def test_each_venue_lists_its_own_insurance_fund_and_the_others_as_given() -> None:
    # X4: venue i's claim receiver on venue j's chain; the caller names it where it differs.
    ds: Any = [_Deployment(1, A), _Deployment(2, A)]
    on_0 = venue_list(ds, [B, B], 0, {(1, 0): B, (0, 1): B})
    assert [(v.chain_id, v.claim_receiver) for v in on_0] == [(1, A), (2, B)]
    on_1 = venue_list(ds, [B, B], 1)
    assert [(v.chain_id, v.claim_receiver) for v in on_1] == [(1, A), (2, A)]


@pytest.mark.parametrize(
    ("venues", "registries", "message"),
    [
        (1, 1, "a link joins 2..32 venues, got 1"),
        (2, 1, "1 committee registries for 2 venues"),
        (2, 2, "venues share a chain id"),
    ],
)
def test_deploy_link_refuses_a_bad_venue_list_in_one_line(
    venues: int, registries: int, message: str
) -> None:
    d: Any = _Deployment(1, A)
    with pytest.raises(ConfigError) as e:
        deploy_link([(None, d)] * venues, [B] * registries)  # type: ignore[list-item]
    assert message in str(e.value)
