"""VenueLink certificates on three linked Anvil chains: digests, the X2 clamp through the one
health function, the in-force rule (G08, K4), the fallback to standalone rules (X6, G07), and
replay and binding (X7, G01). Every revert is checked by its exact custom error.

The book: on venue 0 the trader is 10 ETH long at 3000 with 5000 USDC (static IM 3000, MM 1950);
on venue 1 it is 10 ETH short, the hedge; venue 2 holds nothing of it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import Linked
from helpers import _batch, _entry, _revert, _sign, assert_revert, fund, rpc, send_fast, usdc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offchain.chain.client import Client, wad
from offchain.committee.bls import dev_secret_keys
from offchain.errors import ContractRevert
from offchain.link.messages import (
    UINT64_MAX,
    UINT256_MAX,
    Certificate,
    Order,
    OrderKind,
    VenueView,
    certificate_digest,
    link_id,
    order_digest,
)

STATIC_IM, STATIC_MM = wad(3_000), wad(1_950)


@pytest.fixture
def trader(linked: Linked) -> str:
    return linked.chains[0].accounts[4]


@pytest.fixture
def book(linked: Linked, trader: str) -> Linked:
    """10 ETH long on venue 0, 10 ETH short on venue 1, each on 5000 USDC."""
    for client, size in ((linked.clients[0], 10), (linked.clients[1], -10)):
        maker = client.chain.accounts[5]
        fund(client, trader, "USDC", usdc(5_000))
        fund(client, maker, "USDC", usdc(1_000_000))
        price = client.price_e18("ETH")
        send_fast(
            client.chain,
            client.fn("settleTrade", 0, trader, maker, wad(size), price),
            client.d.matcher,
        )
    return linked


def _requirement(client: Client, account: str) -> tuple[int, int]:
    h = client.health(account)
    return h.initial_margin_wad, h.maintenance_margin_wad


def _in_force(linked: Linked, account: str, im_wad: int, mm_wad: int, pledged: int = 0) -> None:
    """A certificate giving venue 0 (`im_wad`, `mm_wad`) and `pledged`, applied on venue 0."""
    views = [linked.view(j, account, 0, 0) for j in range(3)]
    views[0] = linked.view(0, account, im_wad, mm_wad, pledged)
    linked.submit(0, linked.certificate(account, 1, views))


def _mine_at(client: Client, timestamp: int) -> None:
    rpc(client, "evm_setNextBlockTimestamp", timestamp)
    rpc(client, "evm_mine")


def _advance(client: Client, seconds: int) -> None:
    rpc(client, "evm_increaseTime", seconds)
    rpc(client, "evm_mine")


# ---------------------------------------------------------------------------- digests, link id
@pytest.fixture(scope="module")
def digests(_linked: Linked) -> Linked:
    """The linked venues for pure views: nothing changes, so hypothesis examples share them."""
    return _linked


_uint64 = st.integers(0, UINT64_MAX)
_uint256 = st.integers(0, UINT256_MAX)
_address = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
_prices = st.lists(_uint256, max_size=4)


@st.composite
def _views(draw: st.DrawFn) -> VenueView:
    prices = draw(_prices)
    mask_bits = draw(st.sets(st.integers(0, 255), min_size=len(prices), max_size=len(prices)))
    return VenueView(
        chain_id=draw(_uint64),
        link=draw(_address),
        position_nonce=draw(_uint64),
        pledge_nonce=draw(_uint64),
        im_wad=draw(_uint256),
        mm_wad=draw(_uint256),
        pledged_wad=draw(_uint256),
        price_asset_mask=sum(1 << b for b in mask_bits),
        prices_e18=tuple(prices),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    views=st.lists(_views(), min_size=1, max_size=4),
    account=_address,
    sequence=st.integers(1, UINT64_MAX),
    issued_at=_uint64,
    equity=st.integers(-(2**255), 2**255 - 1),
    im=_uint256,
    mm=_uint256,
)
def test_python_certificate_digest_equals_the_contracts_for_any_values(
    digests: Linked,
    views: list[VenueView],
    account: str,
    sequence: int,
    issued_at: int,
    equity: int,
    im: int,
    mm: int,
) -> None:
    # X7: the committee signs exactly what every venue hashes.
    c = Certificate(b"\x01" * 32, account, sequence, issued_at, equity, im, mm, tuple(views))
    digest = digests.links[0].functions.certificateDigest(c.as_abi()).call()
    assert digest == certificate_digest(c)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    chain_id=_uint64,
    link=_address,
    kind=st.sampled_from(list(OrderKind)),
    pledge_id=_uint256,
    amount=_uint256,
    to_venue=_uint256,
    claim=st.binary(min_size=32, max_size=32),
    issued_at=_uint64,
)
def test_python_order_digest_equals_the_contracts_for_any_values(
    digests: Linked,
    chain_id: int,
    link: str,
    kind: OrderKind,
    pledge_id: int,
    amount: int,
    to_venue: int,
    claim: bytes,
    issued_at: int,
) -> None:
    # X3–X5: orders are signed over the contract's own encoding.
    o = Order(b"\x02" * 32, chain_id, link, kind, pledge_id, issued_at, amount, to_venue, claim)
    assert digests.links[0].functions.orderDigest(o.as_abi()).call() == order_digest(o)


def test_every_venue_computes_the_same_link_id_as_python_and_knows_its_own_index(
    linked: Linked,
) -> None:
    # X7: one link id binds every venue's chain id and address, in link order.
    for j, link in enumerate(linked.links):
        assert link.functions.linkId().call() == linked.link_id
        assert link.functions.selfIndex().call() == j
        listed = link.functions.venues().call()
        assert [(v[0], v[1]) for v in listed] == [
            (d.chain_id, x.address) for d, x in zip(linked.deployments, linked.links, strict=True)
        ]
        ch = linked.clients[j].ch
        assert ch.functions.attestor().call() == link.address


# ---------------------------------------------------------------------------- X2 clamp
@pytest.mark.parametrize(
    ("certified", "pledged", "expected"),
    [
        # Tightening always counts, IM and MM each.
        ((wad(4_000), wad(2_500)), 0, (wad(4_000), wad(2_500))),
        # Loosening without pledges: never below static.
        ((wad(1_000), wad(500)), 0, (STATIC_IM, STATIC_MM)),
        # Loosening by at most the pledges: static − pledged, IM and MM each.
        ((0, 0), wad(1_000), (wad(2_000), wad(950))),
        ((wad(2_500), wad(1_200)), wad(1_000), (wad(2_500), wad(1_200))),
        # Pledges above static floor at zero; IM is never below MM.
        ((0, wad(1_500)), wad(5_000), (wad(1_500), wad(1_500))),
    ],
    ids=["tighten", "loosen-unpledged", "loosen-by-pledge", "within-pledge", "im-at-least-mm"],
)
def test_x2_a_certificate_tightens_always_and_loosens_only_by_what_pledges_cover(
    book: Linked,
    trader: str,
    certified: tuple[int, int],
    pledged: int,
    expected: tuple[int, int],
) -> None:
    # X2: im = max(certIm, staticIm − pledged), mm likewise, then im = max(im, mm).
    assert _requirement(book.clients[0], trader) == (STATIC_IM, STATIC_MM)
    _in_force(book, trader, *certified, pledged)
    assert _requirement(book.clients[0], trader) == expected


# ---------------------------------------------------------------------------- in force (G08, K4)
def _new_position_nonce(linked: Linked, trader: str) -> None:
    client = linked.clients[0]
    price = client.price_e18("ETH")
    send_fast(
        client.chain,
        client.fn("settleTrade", 0, trader, client.chain.accounts[5], wad(1), price),
        client.d.matcher,
    )


def _new_pledge_nonce(linked: Linked, trader: str) -> None:
    client, link = linked.clients[0], linked.links[0]
    send_fast(client.chain, client.tokens["USDC"].functions.mint(trader, usdc(1)), client.d.owner)
    send_fast(client.chain, client.tokens["USDC"].functions.approve(link.address, usdc(1)), trader)
    send_fast(client.chain, link.functions.pledge(1, usdc(1)), trader)


def _rotate_a_member(linked: Linked, trader: str) -> None:
    spare = dev_secret_keys(5)[4]
    linked.registries[0].rotate_member(3, spare, linked.deployments[0].owner)


def _age_past_max(linked: Linked, trader: str) -> None:
    _advance(linked.clients[0], 31)


def _price_out_of_band(linked: Linked, trader: str) -> None:
    linked.clients[0].set_price("ETH", 3_031)  # 1.03% away from the certified 3000


@pytest.mark.parametrize(
    "lapse",
    [_new_position_nonce, _new_pledge_nonce, _rotate_a_member, _age_past_max, _price_out_of_band],
    ids=["position-nonce", "pledge-nonce", "key-epoch", "max-age", "price-band"],
)
def test_g08_a_certificate_counts_only_while_nonces_key_epoch_age_and_prices_hold(
    book: Linked, trader: str, lapse
) -> None:
    # G08, K4: a change on the venue, a new committee key set, 30 s, or a price move ends it.
    _in_force(book, trader, wad(5_000), wad(4_000))
    im, mm = _requirement(book.clients[0], trader)
    assert (im, mm) == (wad(5_000), wad(4_000))
    lapse(book, trader)
    im, mm = _requirement(book.clients[0], trader)
    assert im < wad(5_000)
    assert mm < wad(4_000)  # static again (a larger position's static is still below)


@pytest.mark.parametrize(
    ("certified_e18", "in_force"),
    [(wad(3_030), True), (wad(3_030) + 1, False), (wad(2_970), True), (wad(2_970) - 1, False)],
    ids=["+100bps", "+100bps+1wei", "-100bps", "-100bps-1wei"],
)
def test_g08_a_certificate_counts_up_to_max_age_and_the_price_band_and_not_beyond(
    book: Linked, trader: str, certified_e18: int, in_force: bool
) -> None:
    # G08: the bounds themselves still count (30 s, 100 bps of the current price), not one more.
    views = [book.view(j, trader, 0, 0) for j in range(3)]
    views[0] = book.view(0, trader, wad(5_000), wad(4_000), prices={"ETH": certified_e18})
    c = book.certificate(trader, 1, views)
    book.submit(0, c)
    expected = (wad(5_000), wad(4_000)) if in_force else (STATIC_IM, STATIC_MM)
    _mine_at(book.clients[0], c.issued_at + 30)
    assert _requirement(book.clients[0], trader) == expected
    _mine_at(book.clients[0], c.issued_at + 31)
    assert _requirement(book.clients[0], trader) == (STATIC_IM, STATIC_MM)


def test_g08_a_certificate_that_does_not_price_every_held_asset_is_not_in_force(
    book: Linked, trader: str
) -> None:
    # G08: a market the committee did not price is never covered by its allocation.
    view = replace(book.view(0, trader, wad(5_000), wad(4_000)), price_asset_mask=0b10)
    views = [view, *(book.view(j, trader, 0, 0) for j in (1, 2))]
    book.submit(0, book.certificate(trader, 1, views))
    assert book.links[0].functions.appliedCertificate(trader).call()[0] == 1
    assert _requirement(book.clients[0], trader) == (STATIC_IM, STATIC_MM)


def test_requirement_in_force_with_prices_that_do_not_match_the_mask_reverts(
    linked: Linked, trader: str
) -> None:
    # As IAttestationVerifier: a malformed question is an error, never a silent answer.
    fn = linked.links[0].functions.requirementInForce(trader, 0, 0b11, [wad(1)], 1, 1)
    with pytest.raises(ContractRevert) as e:
        linked.chains[0].call(fn, "requirement in force")
    assert_revert(e.value, "PriceCountMismatch", pricesGiven=1, assetsInMask=2)


# ---------------------------------------------------------------------------- X6, G07 fallback
def test_x6_with_no_certificate_in_force_the_venue_answers_as_its_inner_verifier(
    book: Linked, trader: str
) -> None:
    # X6, G07: the link adds nothing while the committee is silent; the ECDSA attestation
    # submitted through the link's `submit` (forwarded to the inner verifier) decides as before.
    client = book.clients[0]
    batch = _batch(client, [_entry(client, trader, 4_500, 2_500)])
    send_fast(
        client.chain, book.links[0].functions.submit(batch.as_tuple(), _sign(client, batch)), trader
    )
    assert _requirement(client, trader) == (wad(4_500), wad(2_500))
    _in_force(book, trader, wad(6_000), wad(5_000))
    assert _requirement(client, trader) == (wad(6_000), wad(5_000))
    _advance(client, 31)  # the certificate lapses; the attestation (max age 300 s) still counts
    assert _requirement(client, trader) == (wad(4_500), wad(2_500))
    send_fast(client.chain, book.links[0].functions.setInner("0x" + "00" * 20), client.d.owner)
    assert _requirement(client, trader) == (STATIC_IM, STATIC_MM)
    err = _revert(client, book.links[0].functions.submit(batch.as_tuple(), b""), trader)
    assert_revert(err, "NoInnerVerifier")


def test_g07_with_the_committee_silent_and_a_pledge_locked_exits_stay_open(
    book: Linked, trader: str
) -> None:
    # G07, X6, S4: a trader with a pledge out and no certificate withdraws and closes as usual.
    _new_pledge_nonce(book, trader)
    client = book.clients[0]
    client.withdraw(trader, "USDC", 1_000)  # equity 5000 − 1000 ≥ static IM 3000
    price = client.price_e18("ETH")
    client.trade("ETH-PERP", trader, client.chain.accounts[5], -wad(10), price)
    assert client.position(trader, "ETH-PERP") == 0
    assert client.withdraw(trader, "USDC", 4_000)["status"] == 1
    assert book.links[0].functions.pledgeOf(1).call()[2] == 1  # still ACTIVE, still locked


# ---------------------------------------------------------------------------- X7, G01 binding
def test_g01_a_certificate_whose_venue_list_names_another_chain_or_address_is_refused(
    book: Linked, trader: str
) -> None:
    # G01: the list is part of the digest and must be the link's, entry by entry.
    c = book.certificate(trader, 1)
    other_chain = book.with_view(c, 1, chain_id=1)
    err = _revert(book.clients[0], book.submit_fn(0, other_chain), trader)
    assert_revert(err, "VenueMismatch", index=1, chainId=1, link=book.links[1].address)
    # Deployed alike, the links share an address on every chain: only the chain id tells them
    # apart, and an entry naming another contract on the right chain is refused too.
    elsewhere = book.deployments[2].clearinghouse
    other_link = book.with_view(c, 2, link=elsewhere)
    err = _revert(book.clients[0], book.submit_fn(0, other_link), trader)
    assert_revert(err, "VenueMismatch", index=2, link=elsewhere)


def test_g01_a_certificate_of_another_link_is_refused_with_wrong_link(
    book: Linked, trader: str
) -> None:
    # G01, X7: a link of two of these venues has another id.
    two = link_id([d.chain_id for d in book.deployments[:2]], [x.address for x in book.links[:2]])
    c = replace(book.certificate(trader, 1), link_id=two)
    err = _revert(book.clients[1], book.submit_fn(1, c), trader)
    assert_revert(err, "WrongLink", expected=book.link_id, got=two)


def test_g01_a_certificate_with_a_venue_left_out_is_refused(book: Linked, trader: str) -> None:
    # G01: exactly the link's venues.
    c = book.certificate(trader, 1)
    short = replace(c, venues=c.venues[:2])
    err = _revert(book.clients[0], book.submit_fn(0, short), trader)
    assert_revert(err, "VenueCountMismatch", got=2, expected=3)


def test_x7_one_certificate_applies_on_every_venue_once_and_a_replay_is_refused(
    book: Linked, trader: str
) -> None:
    # X7: the same signed certificate on each venue (its own entry there); never twice.
    c = book.certificate(trader, 7)
    for j in range(3):
        book.submit(j, c)
        assert book.links[j].functions.appliedCertificate(trader).call()[0] == 7
    for sequence in (7, 6):
        again = replace(c, sequence=sequence)
        err = _revert(book.clients[2], book.submit_fn(2, again), trader)
        assert_revert(err, "CertificateReplayed", account=trader, sequence=sequence, lastSequence=7)


def test_x7_a_certificate_bound_to_stale_nonces_is_refused(book: Linked, trader: str) -> None:
    # X7: the venue's current position and pledge nonces, as the committee saw them.
    c = book.certificate(trader, 1)
    stale = book.with_view(c, 0, position_nonce=c.venues[0].position_nonce - 1)
    err = _revert(book.clients[0], book.submit_fn(0, stale), trader)
    assert_revert(err, "StalePositionNonce", account=trader, certified=0, current=1)
    ahead = book.with_view(c, 0, pledge_nonce=1)
    err = _revert(book.clients[0], book.submit_fn(0, ahead), trader)
    assert_revert(err, "StalePledgeNonce", account=trader, certified=1, current=0)


def test_a_certificate_with_a_price_count_off_its_mask_is_refused(
    book: Linked, trader: str
) -> None:
    # The contract's own check, past Python's (the tuple is edited after it was built).
    c = book.certificate(trader, 1)
    raw = c.as_abi()
    own = list(raw[7][0])
    own[8] = [*own[8], wad(1)]
    raw = (*raw[:7], [tuple(own), *raw[7][1:]])
    digest = book.links[0].functions.certificateDigest(raw).call()
    bitmap, signature = book.sign(digest)
    fn = book.links[0].functions.submitCertificate(raw, bitmap, signature)
    err = _revert(book.clients[0], fn, trader)
    assert_revert(err, "PriceCountMismatch", pricesGiven=2, assetsInMask=1)


def test_g08_a_certificate_from_the_future_or_older_than_max_age_is_refused(
    book: Linked, trader: str
) -> None:
    # G08: 30 s at most, measured on the venue's own clock.
    now = int(book.chains[0].w3.eth.get_block("latest")["timestamp"])
    future = book.certificate(trader, 1, issued_at=now + 60)
    err = _revert(book.clients[0], book.submit_fn(0, future), trader)
    assert err.name == "CertificateFromFuture"
    assert err.args_by_name["issuedAt"] == now + 60
    old = book.certificate(trader, 1, issued_at=now - 40)
    err = _revert(book.clients[0], book.submit_fn(0, old), trader)
    assert_revert(err, "CertificateExpired", issuedAt=now - 40, maxAgeSeconds=30)


def test_a_certificate_below_the_committee_threshold_or_signed_over_another_message_is_refused(
    book: Linked, trader: str
) -> None:
    # G06 (on-chain half): the registry's errors bubble up; nothing is applied.
    c = book.certificate(trader, 1)
    err = _revert(book.clients[0], book.submit_fn(0, c, signers=(0, 1)), trader)
    assert_revert(err, "TooFewSigners", signers=2, threshold=3)
    bitmap, signature = book.sign(certificate_digest(replace(c, sequence=2)))
    fn = book.links[0].functions.submitCertificate(c.as_abi(), bitmap, signature)
    err = _revert(book.clients[0], fn, trader)
    assert_revert(err, "InvalidSignature", message=certificate_digest(c), signerBitmap=bitmap)
    assert book.links[0].functions.appliedCertificate(trader).call()[0] == 0
