"""The linked rule set of the venues lab: the link stood up over the lab's venue chains, the
population's pledges, and the product's link engine driven at the lab's clock.

* `link_chains`: a CommitteeRegistry per chain with the same development committee
  (`COMMITTEE_SIZE` keys, threshold `COMMITTEE_THRESHOLD`), then `offchain.link.deploy_link`: a
  VenueLink per venue, configured with the whole list, over the venue's Gen 3 verifier (its
  `inner`), made the clearinghouse's attestor. Done before the lab's chains stop automining.
* `pledge`: every pledge of the population (`venues_population.pledges`): USDC minted to the
  trader on the holding venue's chain, approved to its VenueLink and pledged to the target venue
  from the trader's own wallet (X3), and a rebalance cap of everything it pledged there (X5).
* `LinkDriver`: the product's `offchain.link.engine.LinkEngine` over the lab's venues, built as
  the engine's own end-to-end tests build it (a `LinkView` of fresh mirrors, the committee's
  aggregator, members in process each with its OWN mirrors of every venue, one `TxSender` per
  chain), with the committee's first `COMMITTEE_THRESHOLD` members online. The lab supplies only
  what a simulation must: each chain mines the engine's transactions at the scenario's clock
  when the engine waits for them (`_MinedSender`), as Gen 3's engine gets a `mine` hook.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from offchain.chain.client import MAX_UINT
from offchain.chain.journal import Journal, Outcome
from offchain.chain.sender import TxSender
from offchain.chain.signers import tx_signer_for
from offchain.committee.aggregator import Aggregator, Signer
from offchain.committee.bls import dev_secret_keys
from offchain.committee.registry import Registry
from offchain.errors import ConfigError
from offchain.lab.runner import DEPOSIT_GAS_LIMIT, LabChain, Run
from offchain.lab.transport import Tx
from offchain.lab.venues_population import Pledge
from offchain.link.deploy import deploy_link
from offchain.link.engine import LinkEngine, StepReport
from offchain.link.member import LinkMember
from offchain.link.messages import pledged_wad
from offchain.link.mirror import LinkMirror
from offchain.link.view import LinkView
from offchain.risk.crossvenue import WadArray

COMMITTEE_SIZE = 5
COMMITTEE_THRESHOLD = 3
PLEDGE_GAS_LIMIT = 300_000
LINK_ENGINE_ACCOUNT = 6  # the dev account the link engine sends from (unused by the runner)


def link_chains(chains: Sequence[LabChain]) -> list[LabChain]:
    """The venues joined by a link (in `chains` order), with the deployments that name it."""
    keys = dev_secret_keys(COMMITTEE_SIZE)
    registries = [
        Registry.deploy(c.chain, c.deployment.owner, keys, COMMITTEE_THRESHOLD).address
        for c in chains
    ]
    linked = deploy_link([(c.chain, c.deployment) for c in chains], registries)
    return [replace(c, deployment=d) for c, d in zip(chains, linked, strict=True)]


def pledge(runs: Sequence[Run], pledges: Sequence[Pledge]) -> None:
    """Sends every pledge from its trader's wallet on the holding venue, at the run's clock:
    first the USDC minted to the wallets, then (a block later, since a block orders different
    senders as it likes) each trader's approval, pledges and rebalance cap."""
    by_holder: dict[int, list[Pledge]] = defaultdict(list)
    for p in pledges:
        by_holder[p.from_venue].append(p)
    for holder, own in by_holder.items():
        run = runs[holder]
        d, enc = run.d, run.transport.codec.encode
        link, usdc = str(d.venue_link), d.collateral("USDC")
        amounts: dict[str, list[tuple[int, int]]] = defaultdict(list)  # trader → (to, units)
        for p in own:
            amounts[run.traders[p.trader]].append(
                (p.to_venue, round(p.amount_usd * 10**usdc.decimals))
            )
        mints = [
            Tx(
                d.owner,
                usdc.token,
                enc("MockERC20", "mint", trader, sum(units for _, units in given)),
                DEPOSIT_GAS_LIMIT,
                "USDC to the trader's wallet",
            )
            for trader, given in amounts.items()
        ]
        run.transport.send_all(mints, timestamp_s=run.now_s)
        pledging: list[Tx] = []
        for trader, given in amounts.items():
            pledging.append(
                Tx(
                    trader,
                    usdc.token,
                    enc("MockERC20", "approve", link, MAX_UINT),
                    DEPOSIT_GAS_LIMIT,
                    "approve the link",
                )
            )
            pledging += [
                Tx(
                    trader,
                    link,
                    enc("VenueLink", "pledge", to_venue, units),
                    PLEDGE_GAS_LIMIT,
                    f"pledge to venue {to_venue}",
                )
                for to_venue, units in given
            ]
            cap = sum(units for _, units in given)
            pledging.append(
                Tx(
                    trader,
                    link,
                    enc("VenueLink", "setRebalanceCap", cap),
                    PLEDGE_GAS_LIMIT,
                    "rebalance cap",
                )
            )
        run.transport.send_all(pledging, timestamp_s=run.now_s)
        run.ledger.pull()


def pledged_wad_to(runs: Sequence[Run]) -> WadArray:
    """[trader, venue]: the active pledges in each venue's favour, held on any venue (what a
    certificate reports to it, X3), from every venue's LinkMirror."""
    column = {a: i for i, a in enumerate(runs[0].traders)}
    pledged = np.zeros((len(column), len(runs)), dtype=object)
    for run in runs:
        decimals = run.d.collateral("USDC").decimals
        link = run.ledger.mirror.link
        if not isinstance(link, LinkMirror):
            continue  # not linked: nothing pledged
        for v in range(len(runs)):
            for p in link.pledged_to(v).values():
                if p.account in column:
                    pledged[column[p.account], v] += pledged_wad(p.amount, decimals)
    return pledged


class _MinedSender(TxSender):
    """The product's sender on a chain that mines only on demand: before waiting for what it
    sent, one block is mined at the scenario's clock. Counts the gas its transactions used."""

    def __init__(self, run: Run, address: str) -> None:
        chain = run.chain
        super().__init__(
            chain.w3,
            tx_signer_for(chain, address),
            Journal(":memory:", chain_id=chain.chain_id, sender=address),
            chain_id=chain.chain_id,
        )
        self._run = run
        self.gas_used = 0

    def wait(self, timeout_s: float) -> list[Outcome]:
        self._run.transport.mine(self._run.now_s)
        outcomes = super().wait(timeout_s)
        self.gas_used += sum(o.gas_used for o in outcomes)
        return outcomes


class LinkDriver:
    """The link engine on the lab's venues: `step` once per update, after every venue moved."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.runs = list(runs)
        chains = [r.chain for r in runs]
        deployments = [r.d for r in runs]
        keys = dev_secret_keys(COMMITTEE_SIZE)
        members: dict[int, Signer] = {}
        for i in range(COMMITTEE_THRESHOLD):
            own = LinkView.connect(chains, deployments)
            own.sync()
            members[i] = LinkMember(own).member(keys[i])
        address = chains[0].accounts[LINK_ENGINE_ACCOUNT]
        self.senders = [_MinedSender(r, address) for r in runs]
        registry = Registry(chains[0], str(_registry_of(runs[0])))
        self.engine = LinkEngine(
            LinkView.connect(chains, deployments),
            Aggregator(registry.public_keys(), COMMITTEE_THRESHOLD),
            members,
            self.senders,
        )
        self.reports: list[StepReport] = []
        self.lags_ms: list[float] = []

    def step(self) -> StepReport:
        """One engine step, run once every venue's update is mined (the last venue events the
        certificates answer); then every venue's ledger reads what it applied. Each certificate
        applied on every venue in the step gets the step's duration as its lag: the engine
        confirms a step's certificates together, at its end. (The engine's own `lags` count
        from when it first saw the account's position and pledge state, which a price move
        does not change, so a certificate that re-prices an unchanged book would carry every
        update since.)"""
        started, applied = time.perf_counter(), len(self.engine.lags)
        report = self.engine.step()
        self.reports.append(report)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.lags_ms += [elapsed_ms] * (len(self.engine.lags) - applied)
        for run in self.runs:
            run.ledger.pull()
        return report

    @property
    def gas(self) -> int:
        return sum(s.gas_used for s in self.senders)


def _registry_of(run: Run) -> str:
    link = run.ledger.mirror.link
    if link is None or link.committee is None:
        raise ConfigError("the venue is not linked", "link the venues before the link engine")
    return link.committee


def claims_paid_usd(runs: Sequence[Run]) -> list[float]:
    """Per venue: the pledged collateral other venues paid its insurance fund for losses it
    booked (X4: `ClaimPaid` on the holder's chain, the pledge's target being the claimant)."""
    out = [0.0] * len(runs)
    for run in runs:
        link = run.ledger.mirror.link
        if not isinstance(link, LinkMirror):
            continue
        decimals = run.d.collateral("USDC").decimals
        for _, e in run.ledger.named("ClaimPaid"):
            target = link.pledges[int(e.args["pledgeId"])].to_venue
            out[target] += int(e.args["amount"]) / 10**decimals
    return out
