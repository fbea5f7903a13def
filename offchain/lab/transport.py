"""Batched JSON-RPC to the lab's Anvil, and a lean ABI codec: the lab's hot path without web3.

web3's per-call path costs ~8 requests per transaction (chain id, estimate, send, receipt polls)
and its ABI layer spends milliseconds per call and per decoded log, which made a 200-trader,
40-update, three-generation lab take minutes in Python alone. Here a whole round (every deposit,
every trade, every liquidation of one keeper pass) is one HTTP batch with explicit nonces and gas,
mined with `evm_mine` at a timestamp the lab chooses, and calls and logs are encoded and decoded
with eth_abi directly from the compiled ABIs (`Codec`). Mining on demand with automine off also
makes each run bit-for-bit reproducible: one sender per batch, so the block contents and order
are fixed by the nonces, and every block's timestamp is the scenario's clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector, to_checksum_address
from eth_utils.abi import collapse_if_tuple

from offchain.chain import Artifacts, Chain, Event
from offchain.errors import ContractRevert, TransactionFailed


@cache
def _checksum(address: str) -> str:
    # The lab sees a few hundred addresses thousands of times; checksumming hashes each time.
    return str(to_checksum_address(address))


def _named(spec: Mapping[str, Any], value: Any) -> Any:
    """An event argument as web3 decodes it: addresses checksummed, structs by field name."""
    kind = str(spec["type"])
    if kind == "address":
        return _checksum(value)
    if kind.startswith("tuple"):
        if kind.endswith("[]"):
            return [_named({**spec, "type": kind[:-2]}, v) for v in value]
        return {c["name"]: _named(c, v) for c, v in zip(spec["components"], value, strict=True)}
    return value


class Codec:
    """Calls encoded and logs decoded from the compiled ABIs with eth_abi alone."""

    def __init__(self, artifacts: Artifacts) -> None:
        self._artifacts = artifacts
        self._functions: dict[tuple[str, str], tuple[bytes, list[str], list[str]]] = {}

    def _function(self, contract: str, name: str) -> tuple[bytes, list[str], list[str]]:
        key = (contract, name)
        if key not in self._functions:
            item = next(
                i
                for i in self._artifacts.abi(contract)
                if i["type"] == "function" and i["name"] == name
            )
            self._functions[key] = (
                function_abi_to_4byte_selector(cast(Any, item)),
                [collapse_if_tuple(i) for i in item["inputs"]],
                [collapse_if_tuple(o) for o in item["outputs"]],
            )
        return self._functions[key]

    def encode(self, contract: str, function: str, *args: Any) -> str:
        selector, inputs, _ = self._function(contract, function)
        return "0x" + (selector + abi_encode(inputs, list(args))).hex()

    def decode(self, contract: str, function: str, data: bytes) -> tuple[Any, ...]:
        """A view's return values (structs as tuples)."""
        return tuple(abi_decode(self._function(contract, function)[2], data))

    def logs(self, raw_logs: Sequence[Mapping[str, Any]]) -> list[Event]:
        """Raw JSON-RPC logs to events, as `Chain.events` gives them."""
        out: list[Event] = []
        for log in raw_logs:
            topics = [bytes.fromhex(t[2:]) for t in log["topics"]]
            item = self._artifacts.events_by_topic.get(topics[0]) if topics else None
            if item is None:
                continue
            indexed = [i for i in item["inputs"] if i["indexed"]]
            plain = [i for i in item["inputs"] if not i["indexed"]]
            if len(indexed) != len(topics) - 1:
                continue  # same signature, different indexing: another contract's event
            args: dict[str, Any] = {}
            for spec, topic in zip(indexed, topics[1:], strict=True):
                args[spec["name"]] = abi_decode([spec["type"]], topic)[0]
            data = bytes.fromhex(log["data"][2:])
            values = abi_decode([collapse_if_tuple(i) for i in plain], data)
            args.update({spec["name"]: v for spec, v in zip(plain, values, strict=True)})
            for spec in item["inputs"]:
                args[spec["name"]] = _named(spec, args[spec["name"]])
            out.append(
                Event(
                    name=item["name"],
                    args=args,
                    address=_checksum(log["address"]),
                    block=int(log["blockNumber"], 16),
                    tx_hash=str(log["transactionHash"]),
                    log_index=int(log["logIndex"], 16),
                )
            )
        return out


@dataclass(frozen=True)
class Tx:
    """One transaction from an unlocked dev account. `action` names it in errors."""

    sender: str
    to: str
    data: str
    gas: int
    action: str


@dataclass(frozen=True)
class Receipt:
    tx_hash: str
    block: int
    gas_used: int
    status: int
    action: str


class Transport:
    """Raw, batched JSON-RPC against one node whose automine this object switches off."""

    def __init__(self, url: str, chain: Chain, *, timeout_s: float = 60.0) -> None:
        self.url = url
        self.chain = chain
        self.timeout_s = timeout_s
        self.codec = Codec(chain.artifacts)
        self._session = requests.Session()
        self._nonces: dict[str, int] = {}
        self._next_id = 0

    # ------------------------------------------------------------------ plumbing
    def _post(self, payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
        response = self._session.post(self.url, json=payload, timeout=self.timeout_s)
        response.raise_for_status()
        body = response.json()
        replies: list[dict[str, Any]] = body if isinstance(body, list) else [body]
        by_id = {r["id"]: r for r in replies}
        return [by_id[p["id"]] for p in payload]

    def _request(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        self._next_id += 1
        return {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": list(params)}

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        """Replies (with `result` or `error`) in call order."""
        if not calls:
            return []
        return self._post([self._request(m, p) for m, p in calls])

    def rpc(self, method: str, *params: Any) -> Any:
        reply = self.batch([(method, params)])[0]
        if "error" in reply:
            raise TransactionFailed(f"{method} failed: {reply['error']}", "check the node")
        return reply.get("result")

    # ------------------------------------------------------------------ chain control
    def manual_mining(self) -> None:
        """From now on blocks are mined only by `mine`, at the timestamps the lab gives."""
        self.rpc("evm_setAutomine", False)

    def mine(self, timestamp_s: int) -> None:
        """One block at `timestamp_s`; the pending block then carries the same time, so what is
        simulated against it (the engine's pre-flight and clock check) sees the lab's clock."""
        self.rpc("evm_mine", timestamp_s)
        self.rpc("evm_setNextBlockTimestamp", timestamp_s)

    def latest_timestamp(self) -> int:
        block = self.rpc("eth_getBlockByNumber", "latest", False)
        return int(block["timestamp"], 16)

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    # ------------------------------------------------------------------ transactions
    def _nonce(self, sender: str) -> int:
        if sender not in self._nonces:
            self._nonces[sender] = int(self.rpc("eth_getTransactionCount", sender, "pending"), 16)
        nonce = self._nonces[sender]
        self._nonces[sender] = nonce + 1
        return nonce

    def send_all(self, txs: Sequence[Tx], *, timestamp_s: int) -> list[Receipt]:
        """Sends every transaction in one batch, mines until all are included, returns receipts
        in order. A mined revert raises `TransactionFailed` naming the action: the lab pre-checks
        everything it sends, so a revert is a bug in the lab, not an outcome to measure."""
        if not txs:
            return []
        calls = []
        for tx in txs:
            sender = _checksum(tx.sender)
            fields = {
                "from": sender,
                "to": _checksum(tx.to),
                "data": tx.data,
                "gas": hex(tx.gas),
                "nonce": hex(self._nonce(sender)),
            }
            calls.append(("eth_sendTransaction", [fields]))
        replies = self.batch(calls)
        hashes: list[str] = []
        for tx, reply in zip(txs, replies, strict=True):
            if "error" in reply:
                raise TransactionFailed(f"{tx.action}: node refused it: {reply['error']}", "")
            hashes.append(str(reply["result"]))
        receipts: list[dict[str, Any] | None] = [None] * len(hashes)
        # A block holds 30M gas; big batches take several blocks, mined at the same timestamp.
        for _ in range(len(hashes) + 1):
            self.mine(timestamp_s)
            missing = [i for i, r in enumerate(receipts) if r is None]
            got = self.batch([("eth_getTransactionReceipt", [hashes[i]]) for i in missing])
            for i, reply in zip(missing, got, strict=True):
                receipts[i] = reply.get("result")
            if all(r is not None for r in receipts):
                break
        out: list[Receipt] = []
        for tx, raw in zip(txs, receipts, strict=True):
            if raw is None:
                raise TransactionFailed(f"{tx.action}: not mined", "check the node's gas limit")
            receipt = Receipt(
                tx_hash=str(raw["transactionHash"]),
                block=int(raw["blockNumber"], 16),
                gas_used=int(raw["gasUsed"], 16),
                status=int(raw["status"], 16),
                action=tx.action,
            )
            if receipt.status != 1:
                raise TransactionFailed(
                    f"{tx.action}: transaction {receipt.tx_hash} reverted when mined",
                    "the lab sent a transaction its own checks should have stopped",
                )
            out.append(receipt)
        return out

    def call_all(self, calls: Sequence[tuple[str, str]]) -> list[bytes]:
        """`eth_call` of (to, data) pairs against the latest block, in one batch."""
        replies = self.batch(
            [("eth_call", [{"to": _checksum(to), "data": data}, "latest"]) for to, data in calls]
        )
        out: list[bytes] = []
        for reply in replies:
            if "error" in reply:
                raise self._revert(reply["error"], "eth_call")
            out.append(bytes.fromhex(str(reply["result"])[2:]))
        return out

    def events(self, addresses: Sequence[str], from_block: int, to_block: int) -> list[Event]:
        """Decoded logs of `addresses` in a block range."""
        logs = self.rpc(
            "eth_getLogs",
            {
                "address": [_checksum(a) for a in addresses],
                "fromBlock": hex(from_block),
                "toBlock": hex(to_block),
            },
        )
        return self.codec.logs(logs)

    def _revert(self, error: Mapping[str, Any], action: str) -> ContractRevert:
        data = error.get("data")
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            name, args = self.chain.artifacts.decode_error(bytes.fromhex(data[2:]))
            return ContractRevert(name, args, action)
        return ContractRevert("Error", {"message": error.get("message", "")}, action)
