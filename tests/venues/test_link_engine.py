"""The engine across venues end to end on three linked Anvil chains (tests/venues/conftest.py):
certificates built from the venues' mirrors, rebuilt and signed by members (in-process, and as
separate processes), aggregated, applied on every venue through each venue's TxSender; the
committee's refusals (G06), a change on one venue (G08), claims (X4) and two-phase releases
(X3, G03)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import send_fast, usdc

from offchain.chain.journal import Journal
from offchain.chain.sender import TxSender
from offchain.chain.signers import tx_signer_for
from offchain.committee.aggregator import Aggregator, Signer
from offchain.committee.bls import SecretKey
from offchain.committee.member import MemberProcess
from offchain.errors import QuorumNotReached
from offchain.link.engine import LinkEngine
from offchain.link.member import LinkMember, write_config
from offchain.link.messages import OrderKind, certificate_digest, order_digest
from offchain.link.orders import order_json
from offchain.link.view import CertificateProposal, LinkView, certificate_slot

if TYPE_CHECKING:  # not imported at run time: tests/bls has a conftest module too
    from conftest import Linked

ETH = "ETH-PERP"
WAD = 10**18
THRESHOLD = 3  # the fixture's committee: 3 of 4


class Byzantine:
    """A member that signs whatever it is asked (G06)."""

    def __init__(self, key: SecretKey) -> None:
        self._key = key

    def sign(self, sequence: int, message: bytes, proposal: object = None) -> bytes:
        return self._key.sign(message)


def in_process(linked: Linked, indices: range | list[int]) -> dict[int, Signer]:
    """Members with their own mirrors of every venue."""
    out: dict[int, Signer] = {}
    for i in indices:
        view = LinkView.connect(linked.chains, linked.deployments)
        view.sync()
        out[i] = LinkMember(view).member(linked.keys[i])
    return out


def make_engine(linked: Linked, members: dict[int, Signer]) -> LinkEngine:
    senders = [
        TxSender(
            chain.w3,
            tx_signer_for(chain, linked.keeper),
            Journal(":memory:", chain_id=chain.chain_id, sender=linked.keeper),
            chain_id=chain.chain_id,
        )
        for chain in linked.chains
    ]
    aggregator = Aggregator(linked.registries[0].public_keys(), THRESHOLD)
    view = LinkView.connect(linked.chains, linked.deployments)
    return LinkEngine(view, aggregator, members, senders)


@pytest.fixture
def engine(linked: Linked) -> LinkEngine:
    return make_engine(linked, in_process(linked, range(THRESHOLD)))


def open_on(linked: Linked, j: int, trader: str, size: float, collateral_usd: float) -> None:
    """`trader` deposits and opens `size` ETH on venue j against a deep-pocketed maker."""
    client = linked.clients[j]
    maker = client.chain.accounts[5]
    client.deposit(trader, "USDC", collateral_usd, mint=True)
    client.deposit(maker, "USDC", 50_000_000, mint=True)
    client.trade(ETH, trader, maker, int(size * WAD), client.price_e18("ETH"))


def in_force(linked: Linked, j: int, account: str) -> bool:
    """Whether venue j's link holds a certificate in force for `account` now (the contract's
    own answer, at the clearinghouse's nonce and the oracle's prices)."""
    client, d = linked.clients[j], linked.deployments[j]
    state = client.account(account)
    assets = sorted({m.oracle_asset for m in d.markets if state["market_mask"] >> m.id & 1})
    mask = sum(1 << a for a in assets)
    prices = [client.price_e18(d.asset(a).symbol) for a in assets]
    answer = linked.links[j].functions.requirementInForce(
        account, state["nonce"], mask, prices, 0, 0
    )
    return bool(answer.call()[0])


def applied_sequence(linked: Linked, j: int, account: str) -> int:
    return int(linked.links[j].functions.appliedCertificate(account).call()[0])


def advance(linked: Linked, seconds: int) -> None:
    for chain in linked.chains:
        now = int(chain.w3.eth.get_block("latest")["timestamp"])
        chain.w3.provider.make_request("evm_mine", [now + seconds])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- X1 in force
def test_split_leverage__certified_tighter_on_every_venue(
    linked: Linked, engine: LinkEngine
) -> None:
    # X1: 250 ETH long on each of two venues: each alone is below the $1M tier floor, the whole
    # book is above it. Every venue applies the certificate, and its requirement in force is the
    # tighter one (X2 lets a certificate tighten freely).
    trader = linked.chains[0].accounts[4]
    for j in (0, 1):
        open_on(linked, j, trader, 250, 300_000)
    static = [linked.clients[j].health(trader).initial_margin_wad for j in (0, 1)]
    report = engine.step()
    assert (report.due, report.certified, report.applied) == (2, 2, 2)  # and the maker
    assert [applied_sequence(linked, j, trader) for j in range(3)] == [1, 1, 1]
    assert all(in_force(linked, j, trader) for j in range(3))
    for j in (0, 1):
        assert linked.clients[j].health(trader).initial_margin_wad > static[j]
    # Nothing changed: nothing is due again until the certificate nears its max age.
    assert engine.step().due == 0
    assert len(engine.lags) == 2


def test_members_as_processes__certify_what_their_mirrors_rebuild(
    linked: Linked, tmp_path: Path
) -> None:
    # Members in their own processes, each with its own mirrors of the three chains; the
    # aggregator combines k of them and every venue applies the result.
    config = write_config(
        tmp_path / "venues.json",
        [str(c.w3.provider.endpoint_uri) for c in linked.chains],  # type: ignore[attr-defined]
        linked.deployments,
    )
    command = [sys.executable, "-m", "offchain.link.member", "--config", str(config)]
    processes = [MemberProcess(key, command=command) for key in linked.keys]
    try:
        trader = linked.chains[0].accounts[4]
        open_on(linked, 0, trader, 10, 20_000)
        open_on(linked, 1, trader, -10, 20_000)
        engine = make_engine(linked, dict(enumerate(processes)))
        report = engine.step()
        assert report.applied == 2, report.refused
        assert all(in_force(linked, j, trader) for j in range(3))
    finally:
        for p in processes:
            p.close()


# ---------------------------------------------------------------------------- G06
def test_g06_fewer_than_k_members__nothing_certified(linked: Linked) -> None:
    trader = linked.chains[0].accounts[4]
    open_on(linked, 0, trader, 10, 20_000)
    engine = make_engine(linked, in_process(linked, [0, 1]))  # k = 3
    report = engine.step()
    assert report.applied == 0
    assert "2 valid partial signatures, 3 needed" in report.refused[trader]
    assert [applied_sequence(linked, j, trader) for j in range(3)] == [0, 0, 0]


def test_g06_members_refuse_what_their_mirrors_do_not_rebuild(
    linked: Linked, engine: LinkEngine
) -> None:
    # A proposal whose allocation was loosened: same inputs, different certificate. Honest
    # members rebuild their own and refuse; a byzantine one alone cannot make a quorum.
    trader = linked.chains[0].accounts[4]
    open_on(linked, 0, trader, 10, 20_000)
    engine.view.sync()
    now = int(linked.chains[0].w3.eth.get_block("latest")["timestamp"])
    prices = [engine._prices(v) for v in range(3)]
    book = engine.view.book([trader], prices, now)
    honest = engine.view.built(book, trader, 1, now, prices).certificate
    loose = linked.with_view(honest, 0, im_wad=0, mm_wad=0)
    members = {**engine.members, 3: Byzantine(linked.keys[3])}
    proposal = {"certificate": CertificateProposal.of(loose, engine.view.heads()).as_json()}
    with pytest.raises(QuorumNotReached) as refused:
        engine.aggregator.certify(
            certificate_slot(trader, 1), certificate_digest(loose), members, (), proposal
        )
    assert refused.value.valid == 1
    assert all("my mirrors rebuild" in refused.value.refusals[i] for i in range(THRESHOLD))


def test_g06_an_equivocating_member_is_caught_with_evidence(
    linked: Linked, engine: LinkEngine
) -> None:
    # The byzantine member signs two certificates for one (account, sequence): the aggregator
    # keeps both signatures, which anyone can check against the member's registered key.
    trader = linked.chains[0].accounts[4]
    open_on(linked, 0, trader, 10, 20_000)
    byzantine = Byzantine(linked.keys[3])
    slot = certificate_slot(trader, 1)
    with pytest.raises(QuorumNotReached):
        engine.aggregator.certify(slot, b"\x01" * 32, {3: byzantine})
    with pytest.raises(QuorumNotReached):
        engine.aggregator.certify(slot, b"\x02" * 32, {3: byzantine})
    (evidence,) = engine.aggregator.equivocations
    assert (evidence.member, evidence.sequence) == (3, slot)
    assert evidence.holds(linked.keys[3].public_key())


# ---------------------------------------------------------------------------- G08
def test_g08_a_change_on_one_venue__the_others_stop_trusting_within_max_age(
    linked: Linked, engine: LinkEngine
) -> None:
    trader = linked.chains[0].accounts[4]
    open_on(linked, 0, trader, 10, 20_000)
    open_on(linked, 1, trader, -10, 20_000)
    assert engine.step().applied == 2
    # The trader closes half its short on venue 1: venue 1 stops at once (its position nonce),
    # venues 0 and 2 keep the certificate only until its max age.
    client = linked.clients[1]
    client.trade(ETH, trader, client.chain.accounts[5], 5 * WAD, client.price_e18("ETH"))
    assert not in_force(linked, 1, trader)
    assert in_force(linked, 0, trader)
    max_age = int(linked.links[0].functions.maxAgeSeconds().call())
    advance(linked, max_age + 1)
    assert not any(in_force(linked, j, trader) for j in range(3))
    # The engine saw the change: the next step certifies the new book everywhere (the
    # trader's and its counterparty's: both changed, and both certificates had expired).
    report = engine.step()
    assert report.applied == 2
    assert all(in_force(linked, j, trader) for j in range(3))
    assert [applied_sequence(linked, j, trader) for j in range(3)] == [2, 2, 2]


def test_g08_engine__recertifies_a_changed_account_before_max_age(
    linked: Linked, engine: LinkEngine
) -> None:
    trader = linked.chains[0].accounts[4]
    open_on(linked, 0, trader, 10, 20_000)
    engine.step()
    client = linked.clients[2]
    client.deposit(trader, "USDC", 1_000, mint=True)  # a change on a venue without positions
    report = engine.step()
    assert (report.due, report.applied) == (1, 1)
    assert [applied_sequence(linked, j, trader) for j in range(3)] == [2, 2, 2]


# ---------------------------------------------------------------------------- X3, X4
def pledge(linked: Linked, trader: str, to_venue: int, amount: int) -> int:
    """`trader` pledges `amount` USDC units on venue 0 in favour of `to_venue`."""
    client, link = linked.clients[0], linked.links[0]
    token = client.tokens["USDC"]
    send_fast(client.chain, token.functions.mint(trader, amount), client.d.owner)
    send_fast(client.chain, token.functions.approve(link.address, amount), trader)
    receipt = client.chain.send(link.functions.pledge(to_venue, amount), trader, "pledge")
    (changed,) = [e for e in client.chain.events(receipt) if e.name == "PledgeChanged"]
    return int(changed.args["pledgeId"])


def usdc_of(linked: Linked, j: int, who: str) -> int:
    return int(linked.clients[j].tokens["USDC"].functions.balanceOf(who).call())


def test_x3_release__only_after_the_target_applies_a_certificate_without_it(
    linked: Linked, engine: LinkEngine
) -> None:
    trader = linked.chains[0].accounts[4]
    open_on(linked, 1, trader, 10, 5_000)
    pledge_id = pledge(linked, trader, 1, usdc(2_000))
    engine.step()
    assert linked.links[1].functions.appliedCertificate(trader).call()[7] == 2_000 * WAD
    linked.chains[0].send(linked.links[0].functions.requestRelease(pledge_id), trader, "release")
    before = usdc_of(linked, 0, trader)
    # G03: while venue 1 holds a certificate that counts the pledge, no member signs a release.
    order = linked.order(0, OrderKind.RELEASE, pledge_id)
    digest = order_digest(order)
    with pytest.raises(QuorumNotReached):
        engine.aggregator.certify(
            int.from_bytes(digest, "big"),
            digest,
            engine.members,
            (),
            {"order": order_json(order), "blocks": list(engine.view.heads())},
        )
    # Phase 1: the next certificate leaves the pledge out on venue 1...
    first = engine.step()
    assert first.applied == 1
    assert linked.links[1].functions.appliedCertificate(trader).call()[7] == 0
    assert usdc_of(linked, 0, trader) == before
    # ...phase 2: once the engine's mirrors see it applied, the release is signed and paid.
    assert engine.step().orders == 1
    assert usdc_of(linked, 0, trader) == before + usdc(2_000)


def test_x4_claim__a_loss_on_one_venue_is_paid_from_the_pledge_on_another(
    linked: Linked, engine: LinkEngine
) -> None:
    trader = linked.chains[0].accounts[4]
    pledge(linked, trader, 1, usdc(2_000))
    # 3 ETH long on venue 1 with $1,000; the price falls 1/6: equity −$500, liquidated,
    # and the $500 debt moves to venue 1's insurance fund.
    client = linked.clients[1]
    open_on(linked, 1, trader, 3, 1_000)
    price = client.price_e18("ETH")
    feed = client.feeds["ETH"]
    send_fast(client.chain, feed.functions.setAnswer(price * 5 // 6 // 10**10), client.d.owner)
    client.liquidate(client.chain.accounts[6], trader, ETH)
    fund = linked.deployments[1].insurance_fund
    before = usdc_of(linked, 0, fund)
    report = engine.step()
    assert report.orders == 1
    paid = usdc_of(linked, 0, fund) - before
    assert 0 < paid <= usdc(2_000)
    # Exactly once: the next step finds the claim paid.
    assert engine.step().orders == 0
