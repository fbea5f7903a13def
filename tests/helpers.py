"""Helpers shared by the contract test modules: exact revert checks, fast setup transactions,
batched view reads, funding, and building and submitting signed attestation batches."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector, to_checksum_address
from web3.contract import Contract

from offchain.attest import Batch, Domain, Entry, applied_entries, sign
from offchain.chain import Chain
from offchain.chain.client import Client, wad
from offchain.chain.deploy import dev_engine_keys
from offchain.errors import ContractRevert

KEYS = dev_engine_keys(3)
ASSET_BITS = {"ETH": 0b001, "BTC": 0b010, "SOL": 0b100}
View = tuple[str, str, list[str]]


def assert_revert(exc: ContractRevert, name: str, **values: Any) -> None:
    """The exact custom error and the values it carries (addresses compared case-insensitively)."""
    assert exc.name == name, f"expected {name}, got {exc.name}({exc.args_by_name})"
    for key, want in values.items():
        got = exc.args_by_name[key]
        if isinstance(want, str):
            assert str(got).lower() == want.lower(), f"{name}.{key}: {got} != {want}"
        else:
            assert got == want, f"{name}.{key}: {got} != {want}"


@contextmanager
def rollback(chain: Chain) -> Iterator[None]:
    """One hypothesis example's chain state: function-scoped fixtures outlive examples."""
    snapshot = chain.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    try:
        yield
    finally:
        chain.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]


def revert_to(chain: Chain, snapshot: str) -> None:
    """Reverts to `snapshot` and brings the chain clock back to now. Anvil's revert rewinds its
    clock to the snapshot, so each reverted test's duration is lost for good; over a long or
    loaded run the chain falls minutes behind the wall clock, and the engine refuses to attest
    beyond 120 s of skew (C15). Never moves the clock backwards, and never forwards past now:
    mining a block at `latest + 1` after every test would push the chain one second ahead per
    test whenever tests take less than a second (200 quick tests: 160 s ahead, the same C15)."""
    request = chain.w3.provider.make_request
    request("evm_revert", [snapshot])  # type: ignore[arg-type]
    latest = int(chain.w3.eth.get_block("latest")["timestamp"])
    now = int(time.time())
    if now > latest:
        request("evm_setNextBlockTimestamp", [now])  # type: ignore[arg-type]
        request("evm_mine", [])  # type: ignore[arg-type]


def send_fast(chain: Chain, fn: Any, sender: str) -> None:
    """Setup transactions that must succeed, without the pre-flight: a failure is a test error."""
    assert try_send(chain, fn, sender), f"setup transaction reverted: {fn}"


def try_send(chain: Chain, fn: Any, sender: str) -> bool:
    """Sends without the pre-flight; True if it was mined successfully."""
    provider = chain.w3.provider
    tx = {
        "from": sender,
        "to": fn.address,
        "data": fn._encode_transaction_data(),
        "gas": hex(3_000_000),
    }
    sent = provider.make_request("eth_sendTransaction", [tx])  # type: ignore[arg-type]
    assert "error" not in sent, sent
    receipt = None
    while receipt is None:
        receipt = provider.make_request("eth_getTransactionReceipt", [sent["result"]])["result"]  # type: ignore[arg-type]
    return bool(receipt["status"] == "0x1")


def _abi_type(output: dict[str, Any]) -> str:
    kind = str(output["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in output["components"]) + ")" + kind[5:]
    return kind


def view(contract: Any, name: str, *args: Any) -> View:
    """A view call encoded with eth_abi directly (web3's encoder costs milliseconds a call)."""
    abi = next(f for f in contract.abi if f.get("type") == "function" and f["name"] == name)
    data = function_abi_to_4byte_selector(abi) + abi_encode(
        [_abi_type(i) for i in abi["inputs"]], list(args)
    )
    return contract.address, "0x" + data.hex(), [_abi_type(o) for o in abi["outputs"]]


def read_many(chain: Chain, views: list[View]) -> list[Any]:
    """Many view calls in one JSON-RPC batch, decoded like `fn.call()` would."""
    requests = [("eth_call", [{"to": to, "data": data}, "latest"]) for to, data, _ in views]
    responses = chain.w3.provider.make_batch_request(requests)  # type: ignore[attr-defined]
    out = []
    for (_, _, types), response in zip(views, responses, strict=True):
        assert "error" not in response, response
        values = abi_decode(types, bytes.fromhex(response["result"][2:]))
        out.append(values[0] if len(values) == 1 else values)
    return out


def rpc(system: Client, method: str, *params: Any) -> Any:
    return system.chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


def make_stale(system: Client, symbol: str, heartbeat_s: int = 3_600) -> int:
    """Makes `symbol`'s feed stale the way feeds go stale, by time passing without a new round
    (publishing a round older than the last accepted one would be ROUND_BACKWARDS, SPEC I19):
    moves time to one second past its heartbeat, then republishes every other feed at its
    current answer so that only `symbol` is stale. Returns the stale round's `updatedAt`."""
    updated_at = int(system.feeds[symbol].functions.latestRoundData().call()[3])
    now = int(system.chain.w3.eth.get_block("latest")["timestamp"])
    rpc(system, "evm_increaseTime", max(0, updated_at + heartbeat_s + 1 - now))
    rpc(system, "evm_mine")
    for other, feed in system.feeds.items():
        if other != symbol:
            answer = feed.functions.getRoundData(0).call()[1]
            send_fast(system.chain, feed.functions.setAnswer(answer), system.d.owner)
    return updated_at


def fund(system: Client, who: str, symbol: str, amount: int) -> None:
    """Mints `amount` token units to `who` and deposits them for `who`."""
    token = system.tokens[symbol]
    send_fast(system.chain, token.functions.mint(who, amount), system.d.owner)
    send_fast(system.chain, token.functions.approve(system.ch.address, amount), who)
    send_fast(system.chain, system.fn("deposit", who, system.d.collateral(symbol).id, amount), who)


def usdc(amount: int | float) -> int:
    return round(amount * 10**6)


def _verifier(system: Client) -> Contract:
    return system.chain.contract("AttestationVerifier", system.d.attestation_verifier)


def _domain(system: Client) -> Domain:
    return Domain(system.chain.chain_id, system.d.attestation_verifier)


def _now(system: Client) -> int:
    return int(system.chain.w3.eth.get_block("latest")["timestamp"])


def _micro(usd: int | str) -> int:
    return int(Decimal(str(usd)) * 10**6)


def _entry(
    system: Client, account: str, im_usd: int | str, mm_usd: int | str, nonce: int | None = None
) -> Entry:
    if nonce is None:
        nonce = system.account(account)["nonce"]
    return Entry(account, nonce, _micro(im_usd), _micro(mm_usd))


def _batch(
    system: Client,
    entries: list[Entry],
    sequence: int = 1,
    *,
    issued_at: int | None = None,
    assets: tuple[str, ...] = ("ETH",),
    prices: tuple[int, ...] | None = None,
) -> Batch:
    mask = 0
    for a in assets:
        mask |= ASSET_BITS[a]
    ordered = sorted(assets, key=lambda a: ASSET_BITS[a])
    return Batch(
        sequence=sequence,
        issued_at=_now(system) if issued_at is None else issued_at,
        price_asset_mask=mask,
        prices_e18=prices if prices is not None else tuple(system.price_e18(a) for a in ordered),
        entries=tuple(entries),
    )


def _sign(system: Client, batch: Batch, keys: list[str] | None = None) -> bytes:
    return sign(batch, _domain(system), KEYS[:2] if keys is None else keys)


def _submit(system: Client, batch: Batch, sigs: bytes | None = None, sender: str | None = None):
    sigs = _sign(system, batch) if sigs is None else sigs
    return system.chain.send(
        _verifier(system).functions.submit(batch.as_tuple(), sigs),
        sender or system.d.owner,
        "submit attestation",
    )


def _revert(system: Client, fn, sender: str) -> ContractRevert:
    """The decoded custom error of a call that must revert; address values checksummed."""
    with pytest.raises(ContractRevert) as e:
        system.chain.send(fn, sender, "expected to revert")
    err = e.value
    err.args_by_name = {
        k: to_checksum_address(v) if isinstance(v, str) and len(v) == 42 else v
        for k, v in err.args_by_name.items()
    }
    return err


def _applied(system: Client, account: str) -> tuple[int, int, int, int]:
    return tuple(_verifier(system).functions.appliedEntry(account).call())  # type: ignore[return-value]


def _requirement(system: Client, account: str) -> tuple[int, int]:
    h = system.health(account)
    return h.initial_margin_wad, h.maintenance_margin_wad


def _events(system: Client, receipt, name: str) -> list[dict]:
    return [e.args for e in system.events(receipt) if e.name == name]


def _attested(system: Client, receipt) -> list[dict]:
    """Every entry the receipt's `BatchApplied` events put in force, as (account, sequence,
    positionNonce, imMicroUsd, mmMicroUsd) by name, in order (I36: the one event rebuilds them)."""
    return [
        {
            "account": e.account,
            "sequence": a["sequence"],
            "positionNonce": e.position_nonce,
            "imMicroUsd": e.im_micro_usd,
            "mmMicroUsd": e.mm_micro_usd,
        }
        for a in _events(system, receipt, "BatchApplied")
        for e in applied_entries(bytes(a["entries"]), a["appliedBits"])
    ]


def _submit_reverts(
    system: Client,
    batch: Batch | tuple,
    sigs: bytes | None = None,
    verifier: Contract | None = None,
) -> ContractRevert:
    if sigs is None:
        assert isinstance(batch, Batch)
        sigs = _sign(system, batch)
    raw = batch.as_tuple() if isinstance(batch, Batch) else batch
    fn = (verifier or _verifier(system)).functions.submit(raw, sigs)
    return _revert(system, fn, system.d.owner)


def fund_absorbs(system: Client, trader: str, maker: str, keeper: str, long: bool) -> int:
    """A 10 ETH position from 3000 on 3,000 USDC, the price moved 8% against it: equity below
    half of MM, so all 10 ETH move to the fund. Returns the fund's size."""
    fund(system, trader, "USDC", usdc(3_000))
    fund(system, maker, "USDC", usdc(1_000_000))
    size = wad(10) if long else -wad(10)
    send_fast(
        system.chain,
        system.fn("settleTrade", 0, trader, maker, size, system.price_e18("ETH")),
        system.d.matcher,
    )
    answer = 2_760 if long else 3_240
    send_fast(system.chain, system.feeds["ETH"].functions.setAnswer(answer * 10**8), system.d.owner)
    system.liquidate(keeper, trader, "ETH-PERP")
    return system.position(system.d.insurance_fund, "ETH-PERP")
