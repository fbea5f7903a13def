"""The engine's view of the chain, rebuilt from events alone: accounts and attestations.

`EngineMirror` is `offchain.chain.mirror.AccountMirror` plus the verifier's state
(`offchain.chain.attestations.AttestationMirror`: applied entries, the ring of batch records, the
key epoch and parameters), both from one `eth_getLogs` per sync, with version counters that tell
the book (`book.py`) what to rebuild.
"""

from __future__ import annotations

from typing import Any

from eth_utils import event_abi_to_log_topic
from web3.types import RPCEndpoint

from offchain.chain import Chain, Event, checksum
from offchain.chain.attestations import AttestationMirror
from offchain.chain.bindings import refuse_removed
from offchain.chain.mirror import AccountMirror
from offchain.models import Deployment
from offchain.sync.delivery import BatchAppliedLog


class EngineMirror(AccountMirror):
    """`AccountMirror` plus the verifier's state (`attestations`: applied entries, the ring of
    batch records, the key epoch and parameters), all from one `eth_getLogs` per sync."""

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        super().__init__(
            chain, deployment.clearinghouse, deployment.insurance_fund, deployment.block
        )
        self.verifier = str(deployment.attestation_verifier)
        self.attestations = AttestationMirror()
        self.state_version = 0  # bumped by any clearinghouse state event
        self.changed_attested: set[str] = set()
        self.verifier_version = 0  # bumped by key, threshold and parameter changes
        topics = {
            name: "0x" + event_abi_to_log_topic(item).hex()  # type: ignore[arg-type]
            for contract in ("Clearinghouse", "AttestationVerifier")
            for item in chain.artifacts.abi(contract)
            if item["type"] == "event" and (name := item["name"])
        }
        self._batch_applied = BatchAppliedLog(chain.artifacts.abi("AttestationVerifier"))
        self._hot_topics = [topics["BatchApplied"]]
        self._other_topics = sorted(t for n, t in topics.items() if n != "BatchApplied")

    _STATE = (*AccountMirror._STATE, "attestations")

    def _fetch(self, start: int, end: int) -> list[tuple[int, Any]]:
        """Every log of blocks `start`..`end` in chain order.

        The event every batch emits (`BatchApplied`, with the batch's packed entries) is read
        as raw JSON and decoded with eth_abi directly: web3's log formatting costs ~1 ms per log
        and grows with its data. Everything else goes through the ABI decoder as in
        `AccountMirror`."""
        ordered: list[tuple[int, int, Event | dict[str, Any]]] = []
        params: Any = {
            "address": self.verifier,
            "fromBlock": hex(start),
            "toBlock": hex(end),
            "topics": [self._hot_topics],
        }
        response = self.chain.w3.provider.make_request(RPCEndpoint("eth_getLogs"), [params])
        if "error" in response:
            raise RuntimeError(f"eth_getLogs: {response['error']}")
        refuse_removed(response["result"])
        for log in response["result"]:
            ordered.append((int(log["blockNumber"], 16), int(log["logIndex"], 16), log))
        other = self.chain.w3.eth.get_logs(
            {
                "address": [checksum(self.clearinghouse), checksum(self.verifier)],
                "fromBlock": start,
                "toBlock": end,
                "topics": [self._other_topics],
            }
        )
        refuse_removed(other)
        for e in self.chain.events(other):
            ordered.append((e.block, e.log_index, e))
        ordered.sort(key=lambda item: (item[0], item[1]))
        return [(block, item) for block, _, item in ordered]

    def _apply_item(self, item: Any) -> None:
        if isinstance(item, Event):
            self.apply(item)
        else:
            self._apply_hot(item)

    def _rewound(self) -> None:
        # Everything the book derived may be stale: rebuild it, and re-read the verifier.
        self.state_version += 1
        self.verifier_version += 1
        self.changed_attested.clear()

    def _apply_hot(self, log: dict[str, Any]) -> None:
        changed = self.attestations.apply_batch(self._batch_applied.decode(log))
        self.changed_attested.update(changed)

    def apply(self, e: Event) -> None:
        if e.address.lower() != self.verifier.lower():
            before = len(self.accounts)
            super().apply(e)
            if e.name in _STATE_EVENTS or len(self.accounts) != before:
                self.state_version += 1
            return
        self.attestations.apply(e)
        if e.name in ("SignerAdded", "SignerRemoved", "ThresholdSet", "ParamsSet"):
            self.verifier_version += 1


_STATE_EVENTS = frozenset(
    {
        "Deposit",
        "Withdraw",
        "TradeSettled",
        "Liquidate",
        "CollateralSeized",
        "InsolvencyResolved",
        "CollateralConfigured",
        "MarketConfigured",
        "FundingSettled",  # cash and the position's funding index (the market's own is read live)
    }
)
