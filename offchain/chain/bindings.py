"""web3 bindings from the compiled artifacts, pre-flighted transactions and decoded events.

Every transaction is simulated before it is sent: one that would revert raises `ContractRevert`
naming the contract's custom error and its values, and nothing is sent. Results are read from
receipts' events, not re-queried.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector, to_checksum_address
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3._utils.events import get_event_data
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TimeExhausted,
    Web3RPCError,
)
from web3.types import RPCEndpoint, TxReceipt

from offchain.errors import (
    ConfigError,
    ContractRevert,
    RpcUnreachable,
    ToolchainError,
    TransactionFailed,
)
from offchain.settings import Settings

# Funding accrues at most once per block per market (IFunding): a node that estimates at the
# latest block's time, where an accrual just happened, prices the cheap path, and the block that
# includes the transaction may accrue and settle (≈ 30k more gas). Unused gas is not charged.
ACCRUAL_HEADROOM_GAS = 60_000


class Artifacts:
    """ABIs and bytecode from ape's build manifest (`.build/__local__.json`)."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise ToolchainError(
                f"compiled contracts not found at {path}",
                "run `make install` (it runs `ape compile`)",
            )
        self._types: dict[str, Any] = json.loads(path.read_text())["contractTypes"]

    def abi(self, name: str) -> list[dict[str, Any]]:
        return list(self._types[name]["abi"])

    def bytecode(self, name: str) -> str:
        code = self._types[name].get("deploymentBytecode", {}).get("bytecode")
        if not code or code == "0x":
            raise ToolchainError(f"{name} has no bytecode (an interface?)", "deploy a contract")
        return str(code)

    @cached_property
    def errors_by_selector(self) -> dict[bytes, dict[str, Any]]:
        table: dict[bytes, dict[str, Any]] = {}
        for contract in self._types.values():
            for item in contract["abi"]:
                if item["type"] == "error":
                    table[function_abi_to_4byte_selector(item)] = item
        return table

    @cached_property
    def events_by_topic(self) -> dict[bytes, dict[str, Any]]:
        table: dict[bytes, dict[str, Any]] = {}
        for contract in self._types.values():
            for item in contract["abi"]:
                if item["type"] == "event" and not item.get("anonymous"):
                    table[event_abi_to_log_topic(item)] = item
        return table

    def decode_error(
        self, data: bytes, abi: Sequence[Mapping[str, Any]] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """(error name, values by name) for revert data; `Error(string)` and panics too.

        Two contracts may declare errors with one signature and different argument names
        (`InvalidThreshold(uint256,uint256)`): the called contract's own `abi` decides first;
        the table of every artifact covers errors bubbling up from contracts it calls."""
        selector, payload = data[:4], data[4:]
        if selector == bytes.fromhex("08c379a0"):
            return "Error", {"message": abi_decode(["string"], payload)[0]}
        if selector == bytes.fromhex("4e487b71"):
            return "Panic", {"code": hex(abi_decode(["uint256"], payload)[0])}
        own = (
            e
            for e in abi or ()
            if e.get("type") == "error" and function_abi_to_4byte_selector(e) == selector  # type: ignore[arg-type]
        )
        item = next(own, None) or self.errors_by_selector.get(selector)
        if item is None:
            return "UnknownError", {"data": "0x" + data.hex()}
        types = [i["type"] for i in item["inputs"]]
        values = abi_decode(types, payload) if types else ()
        return item["name"], {i["name"]: v for i, v in zip(item["inputs"], values, strict=True)}


# What a node going away looks like through web3's HTTP provider: refused, reset, timed out.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


@dataclass(frozen=True)
class Event:
    """A decoded log."""

    name: str
    args: dict[str, Any]
    address: str
    block: int
    tx_hash: str
    log_index: int


def _without_cache_noise(record: logging.LogRecord) -> bool:
    """Drops web3's ERROR (with a traceback) when its cache's own validation call fails, as it
    does whenever the node is unreachable: the request itself fails and its caller reports
    the outage in one line (`RpcUnreachable`, the services' "chain unreachable")."""
    return not record.getMessage().startswith("There was an exception while caching")


class Chain:
    """One connection to one chain, with the artifacts and the signers it may use."""

    def __init__(self, w3: Web3, artifacts: Artifacts, keys: Iterable[str] = ()) -> None:
        self.w3 = w3
        self.artifacts = artifacts
        self._local: dict[str, LocalAccount] = {}
        for key in keys:
            self.add_key(key)

    @classmethod
    def connect(cls, settings: Settings, rpc_url: str | None = None) -> Chain:
        url = rpc_url or settings.rpc_url
        # Caching eth_chainId saves one round trip on every call web3 makes.
        provider = HTTPProvider(
            url, request_kwargs={"timeout": settings.rpc_timeout_s}, cache_allowed_requests=True
        )
        provider.logger.addFilter(_without_cache_noise)
        w3 = Web3(provider)
        # web3's default middleware (ENS lookups, validation, gas strategies) costs milliseconds
        # per call and does nothing for us: addresses are checksummed here and fees come from
        # the node or the submitter.
        for name in ("ens_name_to_address", "validation", "gas_price_strategy"):
            with contextlib.suppress(ValueError):
                w3.middleware_onion.remove(name)
        try:
            w3.eth.chain_id  # noqa: B018 - a cheap call that proves the node answers
        except Exception as exc:  # requests' connection errors vary by cause
            raise RpcUnreachable(url, type(exc).__name__) from exc
        keys = [settings.private_key.get_secret_value()] if settings.private_key else []
        return cls(w3, Artifacts(settings.artifacts), keys)

    def add_key(self, key: str) -> str:
        try:
            acct: LocalAccount = Account.from_key(key)
        except (ValueError, TypeError) as exc:
            raise ConfigError("the private key is malformed", "give 32 bytes as 0x-hex") from exc
        self._local[acct.address] = acct
        return str(acct.address)

    @cached_property
    def genesis_tag(self) -> str:
        """The genesis block hash's first 12 hex digits. A restarted local chain keeps its chain
        id and contract addresses, so files of one chain (journals, outboxes) are named by this
        too, and a dead chain's transactions are never replayed on the new one."""
        return self.genesis_hash[2:14]

    @cached_property
    def genesis_hash(self) -> str:
        """Block 0's hash (0x-hex), which a journal is bound to (see `Journal`)."""
        return "0x" + bytes(self.w3.eth.get_block(0)["hash"]).hex()

    @cached_property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    @cached_property
    def accounts(self) -> list[str]:
        """Signers: local keys first, then the node's unlocked accounts (Anvil's dev accounts)."""
        return [*self._local, *(str(a) for a in self.w3.eth.accounts)]

    # ------------------------------------------------------------------ contracts
    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=checksum(address), abi=self.artifacts.abi(name))

    def deploy(self, name: str, *args: Any, sender: str) -> Contract:
        factory = self.w3.eth.contract(
            abi=self.artifacts.abi(name), bytecode=self.artifacts.bytecode(name)
        )
        receipt = self.send(factory.constructor(*args), sender, f"deploy {name}")
        address = receipt["contractAddress"]
        assert address is not None
        return self.contract(name, address)

    # ------------------------------------------------------------------ transactions
    def call(self, fn: ContractFunction, action: str = "call") -> Any:
        try:
            return fn.call()
        except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
            raise self._revert(exc, action, _abi_of(fn)) from exc

    def gas_limit(self, fn: Any, sender: str, action: str, *, value: int = 0) -> int:
        """The pre-flight: the gas to send `fn` with (the estimate with headroom, see
        `ACCRUAL_HEADROOM_GAS`). Raises `ContractRevert` if it would revert."""
        params = {"from": checksum(sender), "value": value}
        try:
            return int(fn.estimate_gas(params) * 12 // 10) + ACCRUAL_HEADROOM_GAS
        except (ContractCustomError, ContractLogicError, ContractPanicError) as exc:
            raise self._revert(exc, action, _abi_of(fn)) from exc

    def send(
        self, fn: Any, sender: str, action: str, *, gas: int | None = None, value: int = 0
    ) -> TxReceipt:
        """Pre-flight, sign, send, wait. Raises `ContractRevert`, sending nothing, if it fails."""
        sender_address = checksum(sender)
        params: dict[str, Any] = {"from": sender_address, "value": value}
        params["gas"] = gas or self.gas_limit(fn, sender_address, action, value=value)
        local = self._local.get(sender_address)
        if local is None:
            tx_hash = self._send_unlocked(fn, params)
        else:
            tx = fn.build_transaction(
                {**params, "nonce": self.w3.eth.get_transaction_count(sender_address, "pending")}
            )
            signed = local.sign_transaction(tx)
            try:
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Web3RPCError as exc:
                error = (exc.rpc_response or {}).get("error")
                message = error.get("message", str(exc)) if isinstance(error, dict) else str(exc)
                raise _refused(action, sender_address, message) from exc
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=120, poll_latency=0.01
            )
        except TimeExhausted as exc:
            raise TransactionFailed(
                f"{action}: no receipt for {tx_hash.hex()} after 120 s", "check the node is mining"
            ) from exc
        if receipt["status"] != 1:
            raise TransactionFailed(
                f"{action}: transaction {tx_hash.hex()} reverted when mined",
                "the chain changed between pre-flight and inclusion; retry",
            )
        return receipt

    def _send_unlocked(self, fn: Any, params: dict[str, Any]) -> HexBytes:
        """eth_sendTransaction from a node-unlocked account (local chains). Sent raw: the node
        fills nonce and fees itself, which saves web3's default-filling round trips."""
        if hasattr(fn, "data_in_transaction"):  # a constructor
            tx: dict[str, Any] = {"data": fn.data_in_transaction}
        else:
            tx = {"to": fn.address, "data": fn._encode_transaction_data()}
        tx |= {"from": params["from"], "gas": hex(params["gas"]), "value": hex(params["value"])}
        response = self.w3.provider.make_request(RPCEndpoint("eth_sendTransaction"), [tx])
        if "error" in response:
            error = response["error"]
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise _refused("send", params["from"], message)
        return HexBytes(response["result"])

    def _revert(
        self, exc: Exception, action: str, abi: Sequence[Mapping[str, Any]] | None = None
    ) -> ContractRevert:
        data = getattr(exc, "data", None)
        if isinstance(data, str) and data.startswith("0x"):
            name, args = self.artifacts.decode_error(bytes.fromhex(data[2:]), abi)
        elif isinstance(exc, ContractLogicError) and exc.message:
            name, args = "Error", {"message": exc.message}
        else:
            name, args = "UnknownError", {"detail": str(exc)}
        return ContractRevert(name, args, action)

    # ------------------------------------------------------------------ events
    def events(self, receipt_or_logs: TxReceipt | Sequence[Any]) -> list[Event]:
        logs = receipt_or_logs["logs"] if isinstance(receipt_or_logs, Mapping) else receipt_or_logs
        out: list[Event] = []
        for log in logs:
            if not log["topics"]:
                continue
            item = self.artifacts.events_by_topic.get(bytes(log["topics"][0]))
            if item is None:
                continue
            try:
                decoded = get_event_data(self.w3.codec, item, log)
            except Exception:  # same topic, different indexing (another contract's event)
                continue
            out.append(
                Event(
                    name=decoded["event"],
                    args=dict(decoded["args"]),
                    address=str(log["address"]),
                    block=int(log["blockNumber"]),
                    tx_hash="0x" + bytes(log["transactionHash"]).hex(),
                    log_index=int(log["logIndex"]),
                )
            )
        return out

    def get_events(self, addresses: Sequence[str], from_block: int, to_block: int) -> list[Event]:
        """Decoded logs of `addresses` in a block range; `ChainReorganised` if the node marks
        any as `removed` (it is answering from a chain that is being reorganised)."""
        logs = self.w3.eth.get_logs(
            {
                "address": [checksum(a) for a in addresses],
                "fromBlock": from_block,
                "toBlock": to_block,
            }
        )
        refuse_removed(logs)
        return self.events(logs)


class ChainReorganised(Exception):
    """A log came back `removed`: the range must be read again."""


def refuse_removed(logs: Sequence[Any]) -> None:
    if any(log.get("removed") for log in logs):
        raise ChainReorganised("the node returned removed logs")


def checksum(address: str) -> ChecksumAddress:
    try:
        return to_checksum_address(address)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{address!r} is not an address", "give a 0x-prefixed 20-byte hex"
        ) from exc


def _refused(action: str, sender: str, message: str) -> TransactionFailed:
    """The node would not take a transaction: one line, with the fix for the usual cause."""
    if "insufficient funds" in message.lower():
        return TransactionFailed(
            f"{action}: {sender} cannot pay for gas ({message})",
            f"send ETH to {sender} on this chain, or use a funded key (MARGINSYNC_PRIVATE_KEY)",
        )
    return TransactionFailed(f"{action}: the node refused the transaction ({message})", "")


def _abi_of(fn: Any) -> list[dict[str, Any]] | None:
    """The whole ABI of the contract a function or constructor belongs to, if web3 has it."""
    for name in (
        "contract_abi",
        "abi",
    ):  # a function keeps it in the first, a constructor in the second
        abi = getattr(fn, name, None)
        if isinstance(abi, list):
            return abi
    return None
