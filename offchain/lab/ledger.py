"""One chain as the lab sees it: the account mirror and every event, read from logs only.

The lab never reads an account's storage in its loop (S7/I17): after each batch of transactions
it pulls the new logs of the clearinghouse and of the contracts it asks for margin (the
attestation verifier, and on a linked venue its VenueLink and committee registry), applies them
to the product's margin mirror (`offchain.link.mirror.linked_margin_mirror`: the accounts, and
the one rule that tells which requirement is in force: the link's certificate, then the
verifier's attestation, then static), and keeps every event tagged with the price update it
happened in.
Metrics are then computed from these events and the exact integer health mirror, and checked
against the chain once at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

from offchain.chain import Chain, Event
from offchain.lab.transport import Transport
from offchain.link.mirror import linked_margin_mirror
from offchain.models import Deployment
from offchain.risk.funding import owed


class Ledger:
    def __init__(self, chain: Chain, deployment: Deployment, transport: Transport) -> None:
        self.transport = transport
        self.deployment = deployment
        self.mirror = linked_margin_mirror(chain, deployment)
        link = self.mirror.link
        others = (
            deployment.attestation_verifier,
            *((link.address, link.committee) if link else ()),
        )
        self._addresses = [deployment.clearinghouse, *(a for a in others if a)]
        self._next_block = deployment.block
        self.tick = 0  # the price update the next events belong to (0 = opening positions)
        self.events: list[tuple[int, Event]] = []

    def pull(self) -> list[Event]:
        """Applies and returns every event since the last pull."""
        head = self.transport.block_number()
        if head < self._next_block:
            return []
        events = self.transport.events(self._addresses, self._next_block, head)
        self._next_block = head + 1
        for event in events:
            # The logs MarginMirror would fetch itself, fetched in the lab's batches: it routes
            # each to its view by the emitting contract.
            self.mirror._apply_item(event)
            self.events.append((self.tick, event))
        return events

    def named(self, name: str) -> Iterator[tuple[int, Event]]:
        return ((tick, e) for tick, e in self.events if e.name == name)

    def funding_paid_wad(self, account: str, prices_e18: dict[int, int], now: int) -> int:
        """Funding `account` has paid since it opened (< 0: received), at block time `now`: what
        its `FundingSettled` events took from its cash plus what its positions owe unsettled,
        which health already takes from its equity."""
        settled = sum(
            int(e.args["amountWad"])
            for _, e in self.named("FundingSettled")
            if str(e.args["account"]) == account
        )
        state = self.mirror.accounts[account]
        indices = self.mirror.funding_indices(prices_e18, now)
        due = sum(
            owed(size, indices[m], state.funding_index.get(m, 0))
            for m, size in state.positions.items()
            if size and m in indices
        )
        return settled + due

    def funding_flows_wad(self) -> tuple[int, int]:
        """(paid, received) over every `FundingSettled` so far: positive amounts are paid,
        negative ones received."""
        amounts = [int(e.args["amountWad"]) for _, e in self.named("FundingSettled")]
        return sum(a for a in amounts if a > 0), -sum(a for a in amounts if a < 0)
