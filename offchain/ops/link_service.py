"""`marginsync link` (its command is in ops/operator.py): the committee's engine across the
venues of a link, as a service.

One `LinkEngine` (offchain/link/engine.py) over every venue of the link file: each step syncs
one mirror per venue, takes one risk pass over every trader's whole book, has the committee
certify what changed and submits each certificate to every venue, then the pledge orders that
are due. Its transactions go through one `TxSender` per chain, each journaled
(`.marginsync/link-<chain>-<genesis>-<address>.sqlite`): a restarted service finishes or
re-broadcasts what the previous one sent before it sends anything new.

The members sign with the committee's development keys (the link file says so; local chains
only): in this process, each with its own mirrors of every venue, or with `--member-processes`
each in its own process (`python -m offchain.link.member`), as separate machines would.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack

import requests
from rich.console import Console

from offchain.chain.journal import Journal, default_journal
from offchain.chain.sender import TxSender
from offchain.chain.signers import tx_signer_for
from offchain.committee.aggregator import Aggregator, Signer
from offchain.committee.bls import dev_secret_keys
from offchain.committee.member import MemberProcess
from offchain.committee.registry import Registry
from offchain.errors import ConfigError
from offchain.link.engine import LinkEngine
from offchain.link.member import LinkMember, write_config
from offchain.link.view import LinkView
from offchain.ops.heartbeat import LinkStatus, lag_line
from offchain.ops.venues import NODE_DIR, LinkRecord, Venue

console = Console(soft_wrap=True)
log = logging.getLogger("marginsync.link")


def members_for(
    link: LinkRecord, venues: Sequence[Venue], *, processes: bool, stack: ExitStack
) -> dict[int, Signer]:
    """Every member of the link's development committee, each with its own view of the venues
    (its own mirrors, or its own process); `stack` closes the processes."""
    if not link.development_committee:
        raise ConfigError(
            "the link's committee keys are not the development ones, so they are not here",
            "run each member where its key is (python -m offchain.link.member --config FILE)",
        )
    keys = dev_secret_keys(link.committee_size)
    if not processes:
        chains = [v.chain for v in venues]
        deployments = [v.deployment for v in venues]
        return {
            i: LinkMember(LinkView.connect(chains, deployments)).member(key)
            for i, key in enumerate(keys)
        }
    config = write_config(
        NODE_DIR / f"link-{link.link_id[2:10]}-members.json",
        [v.record.rpc_url for v in venues],
        [v.deployment for v in venues],
    )
    command = [sys.executable, "-m", "offchain.link.member", "--config", str(config)]
    members: dict[int, Signer] = {}
    for i, key in enumerate(keys):
        process = MemberProcess(key, command=command)
        stack.callback(process.close)
        members[i] = process
    return members


def senders_for(venues: Sequence[Venue], address: str) -> list[TxSender]:
    """One journaled sender per venue's chain, each finishing what a previous run sent."""
    senders = []
    for v in venues:
        chain = v.chain
        path = default_journal("link", chain.chain_id, chain.genesis_tag, address)
        path.parent.mkdir(parents=True, exist_ok=True)
        journal = Journal(path, chain_id=chain.chain_id, sender=address, genesis=chain.genesis_hash)
        sender = TxSender(chain.w3, tx_signer_for(chain, address), journal, chain_id=chain.chain_id)
        sender.resume()
        senders.append(sender)
    return senders


def build_link_engine(
    link: LinkRecord, venues: Sequence[Venue], address: str, members: dict[int, Signer]
) -> LinkEngine:
    first = venues[0]
    registry = Registry(first.chain, first.record.committee_registry)
    view = LinkView.connect([v.chain for v in venues], [v.deployment for v in venues])
    if "0x" + view.link_id.hex() != link.link_id:
        raise ConfigError(
            f"the venues' contracts make link {'0x' + view.link_id.hex()}, the link file says "
            f"{link.link_id}",
            "use the link file the deploy wrote with these registries",
        )
    aggregator = Aggregator(registry.public_keys(), registry.threshold())
    return LinkEngine(view, aggregator, members, senders_for(venues, address))


def run(
    engine: LinkEngine, status: LinkStatus, *, interval_s: float, steps: int | None = None
) -> None:
    """A step every `interval_s` seconds, `steps` of them (forever if None, until SIGTERM or
    Ctrl-C, after the step under way). A node that does not answer costs a step, not the
    service: what was sent is journaled."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        n = 0
        while not stop.is_set() and (steps is None or n < steps):
            started = time.monotonic()
            _step(engine, status, always=steps is not None)
            n += 1
            if steps is None or n < steps:
                stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _step(engine: LinkEngine, status: LinkStatus, *, always: bool) -> None:
    try:
        report = engine.step()
    except requests.RequestException as exc:
        log.warning("step interrupted by %s: %s", type(exc).__name__, exc)
        return
    status.on_step(report)
    if report.due or report.orders or always:
        refused = f", {len(report.refused)} refused" if report.refused else ""
        console.print(
            f"link: step {status.steps}: {report.due} account(s) due, {report.certified} "
            f"certified, {report.applied} applied on every venue, {report.orders} order(s)"
            f"{refused}; {lag_line(engine)}"
        )
    for account, why in report.refused.items():
        console.print(f"link: {account} not certified: {why}")
