"""The link's state from events (LinkMirror) and the margin in force on a linked venue
(MarginMirror): equal to the contract's `requirementInForce` and the one health function to the
wei, with a certificate in force, after each way it lapses, and on the fallback (X2, X6, G08).

The book: on venue 0 the trader is 10 ETH long at 3000 with 5000 USDC (static IM 3000, MM 1950)."""

from __future__ import annotations

import pytest
from conftest import Linked
from helpers import _batch, _entry, _sign, fund, rpc, send_fast, usdc

from offchain.chain.attestations import InForce
from offchain.chain.client import wad
from offchain.chain.margin_mirror import MarginMirror
from offchain.committee.bls import dev_secret_keys
from offchain.link.messages import OrderKind
from offchain.link.mirror import LinkMirror, PledgeState, linked_margin_mirror


@pytest.fixture
def trader(linked: Linked) -> str:
    client = linked.clients[0]
    who, maker = client.chain.accounts[4], client.chain.accounts[5]
    fund(client, who, "USDC", usdc(5_000))
    fund(client, maker, "USDC", usdc(1_000_000))
    send_fast(
        client.chain,
        client.fn("settleTrade", 0, who, maker, wad(10), client.price_e18("ETH")),
        client.d.matcher,
    )
    return who


def _mirrored(linked: Linked, mirror: MarginMirror, account: str) -> tuple[InForce, InForce, int]:
    """(mirror's answer, the contract's `requirementInForce`, the mirror's MM in force) at the
    latest block, after asserting the mirror's answer is what `accountHealth` uses."""
    client = linked.clients[0]
    mirror.sync()
    block = client.chain.w3.eth.get_block("latest")
    prices = {a.id: client.price_e18(a.symbol) for a in client.d.assets}
    static = mirror.health(account, prices)
    now = int(block["timestamp"])
    sim, smm = static.initial_margin_wad, static.maintenance_margin_wad
    ours = mirror.requirement_in_force(account, sim, smm, prices, now)
    mask = mirror.market_asset_mask(account)
    asked = [prices[a] for a in range(mask.bit_length()) if mask >> a & 1]
    nonce = mirror.accounts[account].nonce
    theirs = InForce(
        *linked.links[0]
        .functions.requirementInForce(account, nonce, mask, asked, sim, smm)
        .call(block_identifier=block["number"])
    )
    health = client.health(account)
    assert (health.initial_margin_wad, health.maintenance_margin_wad) == (ours.im_wad, ours.mm_wad)
    return ours, theirs, mirror.maintenance_in_force(account, sim, smm, prices, now)


def _certify(linked: Linked, trader: str, sequence: int, im: int, mm: int, pledged: int) -> None:
    views = [linked.view(j, trader, 0, 0) for j in range(3)]
    views[0] = linked.view(0, trader, im, mm, pledged)
    linked.submit(0, linked.certificate(trader, sequence, views))


def test_margin_mirror_equals_the_link_and_account_health_in_force_and_after_every_lapse(
    linked: Linked, trader: str
) -> None:
    # X2, G08, K4: the keeper's view of a linked venue is the contract's, clause by clause.
    mirror = linked_margin_mirror(linked.chains[0], linked.deployments[0])
    client = linked.clients[0]
    ours, theirs, mm = _mirrored(linked, mirror, trader)
    assert ours == theirs == InForce(False, wad(3_000), wad(1_950))

    _certify(linked, trader, 1, wad(5_000), wad(4_000), 0)  # tightens
    ours, theirs, mm = _mirrored(linked, mirror, trader)
    assert ours == theirs == InForce(True, wad(5_000), wad(4_000))
    assert mm == wad(4_000)

    _certify(linked, trader, 2, 0, 0, wad(1_000))  # loosens by the pledge, no further
    ours, theirs, _ = _mirrored(linked, mirror, trader)
    assert ours == theirs == InForce(True, wad(2_000), wad(950))

    client.set_price("ETH", 3_031)  # out of the band
    ours, theirs, _ = _mirrored(linked, mirror, trader)
    assert ours == theirs
    assert not ours.in_force
    client.set_price("ETH", 3_000)
    assert _mirrored(linked, mirror, trader)[0].in_force

    spare = dev_secret_keys(5)[4]
    linked.registries[0].rotate_member(3, spare, linked.deployments[0].owner)  # K4
    ours, theirs, _ = _mirrored(linked, mirror, trader)
    assert ours == theirs
    assert not ours.in_force

    _certify(linked, trader, 3, wad(5_000), wad(4_000), 0)  # signed by members 0-2, unrotated
    assert _mirrored(linked, mirror, trader)[0].in_force
    rpc(client, "evm_increaseTime", 31)  # G08: max age
    rpc(client, "evm_mine")
    ours, theirs, _ = _mirrored(linked, mirror, trader)
    assert ours == theirs == InForce(False, wad(3_000), wad(1_950))


def test_margin_mirror_falls_back_to_the_inner_verifier_as_the_link_does(
    linked: Linked, trader: str
) -> None:
    # X6: no certificate in force → the venue's own attestation, mirrored from its events.
    mirror = linked_margin_mirror(linked.chains[0], linked.deployments[0])
    client = linked.clients[0]
    batch = _batch(client, [_entry(client, trader, 4_500, 2_500)])
    send_fast(
        client.chain,
        linked.links[0].functions.submit(batch.as_tuple(), _sign(client, batch)),
        trader,
    )
    ours, theirs, _ = _mirrored(linked, mirror, trader)
    assert ours == theirs == InForce(True, wad(4_500), wad(2_500))
    _certify(linked, trader, 1, wad(6_000), wad(5_000), 0)
    ours, theirs, _ = _mirrored(linked, mirror, trader)
    assert ours == theirs == InForce(True, wad(6_000), wad(5_000))
    link = linked.links[0]
    send_fast(client.chain, link.functions.setInner("0x" + "00" * 20), client.d.owner)
    rpc(client, "evm_increaseTime", 31)
    rpc(client, "evm_mine")
    ours, theirs, _ = _mirrored(linked, mirror, trader)
    assert ours == theirs == InForce(False, wad(3_000), wad(1_950))


def test_link_mirror_rebuilds_pledges_nonces_and_allowances_from_events(
    linked: Linked, trader: str
) -> None:
    # X3, X5: what the engine reads to count pledges (and a pledge nonce that voids a certificate).
    client, link = linked.clients[0], linked.links[0]
    send_fast(
        client.chain, client.tokens["USDC"].functions.mint(trader, usdc(3_000)), client.d.owner
    )
    send_fast(
        client.chain, client.tokens["USDC"].functions.approve(link.address, usdc(3_000)), trader
    )
    send_fast(client.chain, link.functions.pledge(1, usdc(1_000)), trader)
    send_fast(client.chain, link.functions.pledge(2, usdc(2_000)), trader)
    send_fast(client.chain, link.functions.setRebalanceCap(usdc(5_000)), trader)
    linked.execute(0, linked.order(0, OrderKind.MOVE, 2, amount=usdc(2_000), to_venue=1))
    send_fast(client.chain, link.functions.requestRelease(1), trader)
    mirror = linked_margin_mirror(linked.chains[0], linked.deployments[0])
    mirror.sync()
    m = mirror.link
    assert isinstance(m, LinkMirror)
    assert m.link_id == linked.link_id
    assert m.self_index == 0
    assert [v.link for v in m.venues] == [x.address for x in linked.links]
    assert m.pledge_nonces[trader] == link.functions.pledgeNonce(trader).call() == 4
    for pledge_id in (1, 2):
        p = m.pledges[pledge_id]
        assert (p.account, p.to_venue, int(p.state), p.amount) == tuple(
            link.functions.pledgeOf(pledge_id).call()
        )
    assert m.pledges[1].state is PledgeState.RELEASING
    assert list(m.pledged_to(1, trader)) == [2]  # a releasing pledge no longer counts
    assert m.allowances[trader] == link.functions.rebalanceAllowance(trader).call() == usdc(3_000)
    assert m.key_epoch == linked.registries[0].key_epoch()
