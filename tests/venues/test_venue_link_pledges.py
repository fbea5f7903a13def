"""VenueLink pledges and committee orders on three linked Anvil chains: pledges (X3, G02), the
two-phase release (G03), claims (X4, G04), rebalancing within the trader's cap (X5), order
binding and replay (G01, X7), and configuration. Every revert by its exact custom error.

The trader holds 10,000 USDC in its wallet on venue 0 and pledges from there."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import Linked
from helpers import _revert, assert_revert, send_fast, usdc
from web3.contract import Contract

from offchain.link.messages import OrderKind, claim_id, order_digest

ACTIVE, RELEASING, RELEASED = 1, 2, 3
ZERO_ADDRESS = "0x" + "00" * 20


@pytest.fixture
def trader(linked: Linked) -> str:
    client = linked.clients[0]
    who = client.chain.accounts[4]
    usdc_token = client.tokens["USDC"]
    send_fast(client.chain, usdc_token.functions.mint(who, usdc(10_000)), client.d.owner)
    send_fast(client.chain, usdc_token.functions.approve(linked.links[0].address, 2**256 - 1), who)
    return who


def _pledge(linked: Linked, trader: str, to_venue: int, amount: int) -> int:
    link = linked.links[0]
    receipt = linked.chains[0].send(link.functions.pledge(to_venue, amount), trader, "pledge")
    (changed,) = [e for e in linked.chains[0].events(receipt) if e.name == "PledgeChanged"]
    return int(changed.args["pledgeId"])


def _pledge_of(link: Contract, pledge_id: int) -> tuple[str, int, int, int]:
    return tuple(link.functions.pledgeOf(pledge_id).call())  # type: ignore[return-value]


def _usdc_balance(linked: Linked, who: str) -> int:
    return int(linked.clients[0].tokens["USDC"].functions.balanceOf(who).call())


def _request_release(linked: Linked, trader: str, pledge_id: int) -> None:
    linked.chains[0].send(linked.links[0].functions.requestRelease(pledge_id), trader, "release")


# ---------------------------------------------------------------------------- X3, G02 pledges
def test_x3_a_pledge_leaves_the_wallet_for_the_link_and_bumps_the_pledge_nonce(
    linked: Linked, trader: str
) -> None:
    # X3: locked here in favour of one venue; every change is a new pledge nonce.
    link = linked.links[0]
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    assert _pledge_of(link, pledge_id) == (trader, 1, ACTIVE, usdc(1_000))
    assert _usdc_balance(linked, trader) == usdc(9_000)
    assert _usdc_balance(linked, link.address) == usdc(1_000)
    assert link.functions.pledgeNonce(trader).call() == 1


def test_g02_pledging_twice_makes_two_pledges_each_with_one_target(
    linked: Linked, trader: str
) -> None:
    # G02: the same collateral is never counted twice: each pledge names exactly one venue, and
    # the link holds exactly what the pledges add up to.
    link = linked.links[0]
    first = _pledge(linked, trader, 1, usdc(1_000))
    second = _pledge(linked, trader, 2, usdc(1_000))
    assert first != second
    assert _pledge_of(link, first) == (trader, 1, ACTIVE, usdc(1_000))
    assert _pledge_of(link, second) == (trader, 2, ACTIVE, usdc(1_000))
    assert _usdc_balance(linked, link.address) == usdc(2_000)
    assert link.functions.pledgeNonce(trader).call() == 2


@pytest.mark.parametrize(
    ("to_venue", "amount", "error", "values"),
    [
        (0, usdc(1), "CannotPledgeToSelf", {"venue": 0}),
        (3, usdc(1), "UnknownVenue", {"venue": 3, "venueCount": 3}),
        (1, 0, "ZeroAmount", {}),
    ],
    ids=["to-self", "unknown-venue", "zero"],
)
def test_x3_a_pledge_to_itself_to_no_venue_or_of_nothing_is_refused(
    linked: Linked, trader: str, to_venue: int, amount: int, error: str, values: dict[str, int]
) -> None:
    # X3: a pledge counts at another venue of the link.
    fn = linked.links[0].functions.pledge(to_venue, amount)
    assert_revert(_revert(linked.clients[0], fn, trader), error, **values)


def test_g02_g03_a_release_only_by_a_release_order_after_the_trader_asked(
    linked: Linked, trader: str
) -> None:
    # G03: no release before phase 1 (the pledge still counts at its target); G02: the trader
    # has no way to take a pledge back by itself; then phase 2 pays it back, once.
    link = linked.links[0]
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    early = linked.order(0, OrderKind.RELEASE, pledge_id)
    err = _revert(linked.clients[0], linked.execute_fn(0, early), trader)
    assert_revert(err, "PledgeNotReleasing", pledgeId=pledge_id, state=ACTIVE)
    _request_release(linked, trader, pledge_id)
    assert _pledge_of(link, pledge_id) == (trader, 1, RELEASING, usdc(1_000))
    assert _usdc_balance(linked, trader) == usdc(9_000)  # phase 1 pays nothing
    linked.execute(0, early)  # the refused order left no trace: the same one now pays
    assert _pledge_of(link, pledge_id) == (trader, 1, RELEASED, 0)
    assert _usdc_balance(linked, trader) == usdc(10_000)
    assert link.functions.pledgeNonce(trader).call() == 3
    err = _revert(linked.clients[0], linked.execute_fn(0, early), trader)
    assert_revert(err, "OrderReplayed", digest=order_digest(early))


def test_g03_only_the_pledges_account_asks_for_its_release_and_only_once(
    linked: Linked, trader: str
) -> None:
    # G03: phase 1 is the account's; a second request finds the pledge already releasing.
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    stranger = linked.chains[0].accounts[7]
    fn = linked.links[0].functions.requestRelease(pledge_id)
    err = _revert(linked.clients[0], fn, stranger)
    assert_revert(err, "NotPledgeOwner", pledgeId=pledge_id, caller=stranger, account=trader)
    _request_release(linked, trader, pledge_id)
    err = _revert(linked.clients[0], fn, trader)
    assert_revert(err, "PledgeNotActive", pledgeId=pledge_id, state=RELEASING)
    err = _revert(linked.clients[0], linked.links[0].functions.requestRelease(99), trader)
    assert_revert(err, "UnknownPledge", pledgeId=99)


# ---------------------------------------------------------------------------- X4, G04 claims
def _claim(linked: Linked, pledge_id: int, amount: int, log_index: int = 0, to_venue: int = 1):
    cid = claim_id(
        linked.deployments[to_venue].chain_id, linked.chains[0].accounts[4], 100, log_index
    )
    return linked.order(
        0, OrderKind.CLAIM, pledge_id, amount=amount, to_venue=to_venue, claim_id=cid
    )


def test_g04_a_claim_pays_the_claiming_venues_receiver_on_this_chain_exactly_once(
    linked: Linked, trader: str
) -> None:
    # X4, G04: venue 1's insurance fund as known on venue 0's chain; the same claim id never
    # again, even in another order.
    link = linked.links[0]
    receiver = link.functions.venue(1).call()[2]
    assert receiver == linked.deployments[1].insurance_fund
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    before = _usdc_balance(linked, receiver)
    order = _claim(linked, pledge_id, usdc(400))
    linked.execute(0, order)
    assert _usdc_balance(linked, receiver) == before + usdc(400)
    assert _pledge_of(link, pledge_id) == (trader, 1, ACTIVE, usdc(600))
    assert link.functions.paidClaims(order.claim_id).call()
    again = replace(order, amount=usdc(100))
    err = _revert(linked.clients[0], linked.execute_fn(0, again), trader)
    assert_revert(err, "ClaimAlreadyPaid", claimId=order.claim_id)


def test_g04_a_claim_above_what_remains_of_the_pledge_is_refused(
    linked: Linked, trader: str
) -> None:
    # G04: never more than was pledged, claims included.
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    linked.execute(0, _claim(linked, pledge_id, usdc(700), log_index=1))
    over = _claim(linked, pledge_id, usdc(301), log_index=2)
    err = _revert(linked.clients[0], linked.execute_fn(0, over), trader)
    assert_revert(
        err, "ClaimExceedsPledge", claimId=over.claim_id, amount=usdc(301), remaining=usdc(300)
    )


def test_g04_a_claim_from_a_venue_the_pledge_does_not_favour_or_on_a_released_pledge_is_refused(
    linked: Linked, trader: str
) -> None:
    # G04, X3: only the target venue claims, and only while the pledge is held.
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    wrong = _claim(linked, pledge_id, usdc(1), to_venue=2)
    err = _revert(linked.clients[0], linked.execute_fn(0, wrong), trader)
    assert_revert(err, "ClaimFromWrongVenue", pledgeId=pledge_id, claimingVenue=2, pledgedTo=1)
    _request_release(linked, trader, pledge_id)
    linked.execute(0, linked.order(0, OrderKind.RELEASE, pledge_id))
    late = _claim(linked, pledge_id, usdc(1))
    err = _revert(linked.clients[0], linked.execute_fn(0, late), trader)
    assert_revert(err, "PledgeNotActive", pledgeId=pledge_id, state=RELEASED)


# ---------------------------------------------------------------------------- X5 rebalancing
def test_x5_the_committee_moves_a_pledge_within_the_traders_cap_and_not_beyond(
    linked: Linked, trader: str
) -> None:
    # X5: a move uses up the allowance; above it, refused.
    link = linked.links[0]
    first = _pledge(linked, trader, 1, usdc(1_000))
    second = _pledge(linked, trader, 1, usdc(1_000))
    move = linked.order(0, OrderKind.MOVE, first, amount=usdc(1_000), to_venue=2)
    err = _revert(linked.clients[0], linked.execute_fn(0, move), trader)
    assert_revert(err, "RebalanceCapExceeded", account=trader, amount=usdc(1_000), allowance=0)
    linked.chains[0].send(link.functions.setRebalanceCap(usdc(1_500)), trader, "cap")
    linked.execute(0, move)
    assert _pledge_of(link, first) == (trader, 2, ACTIVE, usdc(1_000))
    assert link.functions.rebalanceAllowance(trader).call() == usdc(500)
    beyond = linked.order(0, OrderKind.MOVE, second, amount=usdc(1_000), to_venue=2)
    err = _revert(linked.clients[0], linked.execute_fn(0, beyond), trader)
    assert_revert(
        err, "RebalanceCapExceeded", account=trader, amount=usdc(1_000), allowance=usdc(500)
    )


@pytest.mark.parametrize(
    ("to_venue", "amount", "error", "values"),
    [
        (1, usdc(1_000), "MoveToSameVenue", {"venue": 1}),
        (0, usdc(1_000), "CannotPledgeToSelf", {"venue": 0}),
        (5, usdc(1_000), "UnknownVenue", {"venue": 5, "venueCount": 3}),
        (2, usdc(999), "MoveAmountMismatch", {"amount": usdc(999), "remaining": usdc(1_000)}),
    ],
    ids=["same-venue", "to-self", "unknown-venue", "part-of-a-pledge"],
)
def test_x5_a_move_names_another_venue_of_the_link_and_the_whole_pledge(
    linked: Linked, trader: str, to_venue: int, amount: int, error: str, values: dict[str, int]
) -> None:
    # X5: a moved pledge keeps one target (G02).
    link = linked.links[0]
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    linked.chains[0].send(link.functions.setRebalanceCap(usdc(10_000)), trader, "cap")
    move = linked.order(0, OrderKind.MOVE, pledge_id, amount=amount, to_venue=to_venue)
    assert_revert(_revert(linked.clients[0], linked.execute_fn(0, move), trader), error, **values)


# ---------------------------------------------------------------------------- G01, X7 orders
def test_g01_an_order_for_another_venue_or_link_is_refused(linked: Linked, trader: str) -> None:
    # G01: an order names one VenueLink on one chain, and the link.
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    for_venue_1 = linked.order(1, OrderKind.CLAIM, pledge_id, amount=1, to_venue=1)
    err = _revert(linked.clients[0], linked.execute_fn(0, for_venue_1), trader)
    assert_revert(
        err, "OrderNotForThisVenue", chainId=for_venue_1.chain_id, link=linked.links[1].address
    )
    other_link = replace(linked.order(0, OrderKind.CLAIM, pledge_id), link_id=b"\x07" * 32)
    err = _revert(linked.clients[0], linked.execute_fn(0, other_link), trader)
    assert_revert(err, "WrongLink", expected=linked.link_id, got=b"\x07" * 32)


def test_an_order_from_the_future_or_older_than_max_age_is_refused(
    linked: Linked, trader: str
) -> None:
    # X7: orders age like certificates.
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    now = int(linked.chains[0].w3.eth.get_block("latest")["timestamp"])
    future = linked.order(0, OrderKind.RELEASE, pledge_id, issued_at=now + 60)
    err = _revert(linked.clients[0], linked.execute_fn(0, future), trader)
    assert err.name == "OrderFromFuture"
    old = linked.order(0, OrderKind.RELEASE, pledge_id, issued_at=now - 40)
    err = _revert(linked.clients[0], linked.execute_fn(0, old), trader)
    assert_revert(err, "OrderExpired", issuedAt=now - 40, maxAgeSeconds=30)


def test_an_order_of_an_unknown_kind_or_on_no_pledge_is_refused(
    linked: Linked, trader: str
) -> None:
    # The contract's own checks, past Python's (the tuple is edited after it was built).
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    link = linked.links[0]
    raw = list(linked.order(0, OrderKind.RELEASE, pledge_id).as_abi())
    raw[3] = 4
    bitmap, signature = linked.sign(link.functions.orderDigest(tuple(raw)).call())
    fn = link.functions.executeOrder(tuple(raw), bitmap, signature)
    assert_revert(_revert(linked.clients[0], fn, trader), "UnknownOrderKind", kind=4)
    nothing = linked.order(0, OrderKind.RELEASE, 42)
    err = _revert(linked.clients[0], linked.execute_fn(0, nothing), trader)
    assert_revert(err, "UnknownPledge", pledgeId=42)


def test_an_order_below_the_committee_threshold_is_refused(linked: Linked, trader: str) -> None:
    # G06 (on-chain half): orders need the same quorum as certificates.
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    _request_release(linked, trader, pledge_id)
    order = linked.order(0, OrderKind.RELEASE, pledge_id)
    err = _revert(linked.clients[0], linked.execute_fn(0, order, signers=(2, 3)), trader)
    assert_revert(err, "TooFewSigners", signers=2, threshold=3)


# ---------------------------------------------------------------------------- configuration
def _fresh_link(linked: Linked) -> Contract:
    d = linked.deployments[0]
    return linked.chains[0].deploy(
        "VenueLink", d.clearinghouse, d.collaterals[0].token, d.owner, sender=d.owner
    )


def test_configure_is_once_and_names_this_venue(linked: Linked) -> None:
    # X7: the venue list is fixed, and each VenueLink is in its own list on its own chain.
    d, link = linked.deployments[0], linked.links[0]
    listed = link.functions.venues().call()
    registry = linked.registries[0].address
    fn = link.functions.configure(listed, registry, ZERO_ADDRESS)
    assert_revert(_revert(linked.clients[0], fn, d.owner), "AlreadyConfigured")
    fresh = _fresh_link(linked)
    fn = fresh.functions.configure(listed, registry, ZERO_ADDRESS)
    err = _revert(linked.clients[0], fn, d.owner)
    assert_revert(err, "NotInLink", chainId=d.chain_id, link=fresh.address)
    twice = [listed[0], listed[0]]
    err = _revert(
        linked.clients[0], fresh.functions.configure(twice, registry, ZERO_ADDRESS), d.owner
    )
    assert_revert(err, "DuplicateVenue", index=1, chainId=d.chain_id, link=link.address)
    err = _revert(
        linked.clients[0], fresh.functions.configure(listed[:1], registry, ZERO_ADDRESS), d.owner
    )
    assert_revert(err, "VenueCountOutOfRange", count=1, maxVenues=32)
    err = _revert(
        linked.clients[0], fresh.functions.configure(listed, ZERO_ADDRESS, ZERO_ADDRESS), d.owner
    )
    assert_revert(err, "ZeroAddress")
    stranger = linked.chains[0].accounts[7]
    err = _revert(
        linked.clients[0], fresh.functions.configure(listed, registry, ZERO_ADDRESS), stranger
    )
    assert_revert(err, "OwnableUnauthorizedAccount", account=stranger)


def test_an_unconfigured_link_takes_no_pledge_and_answers_static(linked: Linked) -> None:
    # X6: before the link is set, the venue is standalone.
    fresh = _fresh_link(linked)
    owner = linked.deployments[0].owner
    err = _revert(linked.clients[0], fresh.functions.pledge(1, 1), owner)
    assert_revert(err, "NotConfigured")
    answer = fresh.functions.requirementInForce(owner, 0, 1, [10**18], 7, 5).call()
    assert answer == [False, 7, 5]


@pytest.mark.parametrize(("max_age", "band"), [(0, 100), (86_401, 100), (30, 0), (30, 2_001)])
def test_link_params_out_of_range_are_refused(linked: Linked, max_age: int, band: int) -> None:
    # G08: the age bound stays meaningful (1 s .. 1 day), the band within 20%.
    link, owner = linked.links[0], linked.deployments[0].owner
    err = _revert(linked.clients[0], link.functions.setParams(max_age, band), owner)
    assert_revert(err, "ParamOutOfRange", maxAgeSeconds=max_age, priceBandBps=band)


def test_a_zero_claim_is_refused(linked: Linked, trader: str) -> None:
    # G04: a claim moves something.
    pledge_id = _pledge(linked, trader, 1, usdc(1_000))
    order = _claim(linked, pledge_id, 0)
    assert_revert(_revert(linked.clients[0], linked.execute_fn(0, order), trader), "ZeroAmount")
