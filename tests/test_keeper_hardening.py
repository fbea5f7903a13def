"""The keeper and its transaction sender under the THREATS D cases, on real Anvil chains.

D02 fee spikes, D03 stuck transactions, D05 a flaky RPC, D09 a crash between sending and
recording, D01 keepers offline through a crash, D10 dust-sized positions, E07 worst-case gas,
and the requirement in force (S1) mirrored from the verifier's events and ranked on.

Default system: ETH 3000, IM 10 %, MM 6.5 %, penalty 3 % (30 % of it to the keeper, capped at
$1,000), close factor 50 %, dust $50; verifier 2-of-3, max age 300 s, band 100 bps, clamp
[50 %, 500 %] of static.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from web3 import HTTPProvider, Web3

from offchain.attest import Batch, Domain, Entry, sign
from offchain.chain import Chain
from offchain.chain.anvil import DEV_MNEMONIC
from offchain.chain.client import Client, wad
from offchain.chain.deploy import dev_engine_keys
from offchain.chain.journal import Journal, TxState
from offchain.chain.margin_mirror import MarginMirror
from offchain.errors import ConfigError, ContractRevert
from offchain.keeper import Keeper, KeeperConfig, Liquidation
from offchain.models import WAD

GWEI = 10**9
ENGINE_KEYS = dev_engine_keys(3)
KEEPER_INDEX = 6  # the `keeper` fixture's Anvil account
USDC = 10**6


# ---------------------------------------------------------------------------- helpers
@cache
def dev_key(index: int) -> str:
    """The private key of Anvil's `index`-th development account."""
    Account.enable_unaudited_hdwallet_features()
    acct = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + bytes(acct.key).hex()


def rpc(system: Client, method: str, *params: Any) -> Any:
    response = system.chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


@contextmanager
def manual_mining(system: Client) -> Iterator[None]:
    rpc(system, "evm_setAutomine", False)
    try:
        yield
    finally:
        rpc(system, "evm_setAutomine", True)


def mine(system: Client, blocks: int = 1) -> None:
    for _ in range(blocks):
        rpc(system, "evm_mine")


def set_base_fee(system: Client, wei: int) -> None:
    """The latest block's base fee becomes `wei` (an empty block is mined at it)."""
    rpc(system, "anvil_setNextBlockBaseFeePerGas", hex(wei))
    mine(system)


def tx_count(system: Client, address: str) -> int:
    return int(system.chain.w3.eth.get_transaction_count(to_checksum_address(address)))


def liquidate_events(system: Client, from_block: int) -> list[Any]:
    events = system.chain.get_events(
        [system.d.clearinghouse], from_block, system.chain.w3.eth.block_number
    )
    return [e for e in events if e.name == "Liquidate"]


def synthetic_accounts(tag: str, count: int) -> list[str]:
    """Fresh addresses nobody holds a key for: they only need to be credited and traded for."""
    return [to_checksum_address(keccak(text=f"{tag}-{i}")[:20]) for i in range(count)]


def open_many(
    system: Client,
    maker: str,
    rows: Sequence[tuple[str, int, int]],
    market: str = "ETH-PERP",
    maker_usdc: int = 50_000_000,
) -> None:
    """Opens one position per (account, USDC units of collateral, signed size) at the oracle
    price against `maker`, in two JSON-RPC batches (deposits by the owner on the accounts'
    behalf, then trades by the matcher): hundreds of accounts in a second or two."""
    owner, ch = system.d.owner, system.ch
    total = sum(c for _, c, _ in rows)
    token = system.tokens["USDC"]
    system.chain.send(token.functions.mint(owner, total), owner, "mint")
    system.chain.send(token.functions.approve(ch.address, total), owner, "approve")
    system.deposit(maker, "USDC", maker_usdc, mint=True)
    m = system.d.market(market)
    price = system.price_e18(system.d.asset(m.oracle_asset).symbol)

    # Anvil serves a batch concurrently: explicit nonces keep each sender's order.
    nonces = {a: tx_count(system, a) for a in (owner, system.d.matcher)}

    def tx(sender: str, data: str, gas: int) -> tuple[str, list[Any]]:
        nonces[sender] += 1
        return "eth_sendTransaction", [
            {
                "from": sender,
                "to": ch.address,
                "data": data,
                "gas": hex(gas),
                "nonce": hex(nonces[sender] - 1),
            }
        ]

    deposit = "deposit(address,uint256,uint256)"
    trade = "settleTrade(uint256,address,address,int256,uint256)"
    deposits = [tx(owner, calldata(deposit, a, 0, c), 200_000) for a, c, _ in rows]
    trades = [
        tx(system.d.matcher, calldata(trade, m.id, a, maker, s, price), 600_000) for a, _, s in rows
    ]
    send_batch(system, deposits)  # all mined before any trade needs its margin
    send_batch(system, trades)


def calldata(signature: str, *args: Any) -> str:
    """ABI-encoded call data with eth_abi alone: web3's encoder costs milliseconds a call, which
    adds up to seconds over hundreds of setup transactions."""
    types = signature[signature.index("(") + 1 : -1].split(",")
    return "0x" + (function_signature_to_4byte_selector(signature) + abi_encode(types, args)).hex()


def send_batch(system: Client, calls: list[tuple[str, list[Any]]]) -> None:
    """Sends a JSON-RPC batch of transactions and mines until every one is in, successfully.
    Mining by hand: Anvil serves a batch concurrently, and with automine a transaction that
    overtook its predecessor could wait in the pool for a block nobody triggers."""
    provider = system.chain.w3.provider
    with manual_mining(system):
        sent = provider.make_batch_request(calls)  # type: ignore[attr-defined]
        assert all("result" in r for r in sent), [r for r in sent if "result" not in r][:2]
        hashes = [r["result"] for r in sent]
        for _ in range(len(calls)):
            mine(system)
            receipts = [
                r["result"]
                for r in provider.make_batch_request(  # type: ignore[attr-defined]
                    [("eth_getTransactionReceipt", [h]) for h in hashes]
                )
            ]
            if all(r is not None for r in receipts):
                break
        else:
            raise AssertionError("setup transactions were never mined")
    assert all(r["status"] == "0x1" for r in receipts), "a setup transaction reverted"


def make_keeper(
    system: Client,
    index: int = KEEPER_INDEX,
    *,
    config: KeeperConfig | None = None,
    journal: Path | None = None,
    rpc_url: str | None = None,
) -> Keeper:
    """A keeper signing locally with Anvil account `index`'s key, optionally through `rpc_url`."""
    w3 = system.chain.w3 if rpc_url is None else Web3(HTTPProvider(rpc_url))
    chain = Chain(w3, system.chain.artifacts)
    address = chain.add_key(dev_key(index))
    return Keeper(Client(chain, system.d), address, config=config, journal=journal)


def submit_attestation(
    system: Client,
    entries: list[Entry],
    sequence: int,
    *,
    issued_at: int | None = None,
    assets: tuple[str, ...] = ("ETH", "BTC", "SOL"),
) -> None:
    """A 2-of-3 batch priced at the current oracle prices of `assets`."""
    verifier = system.chain.contract("AttestationVerifier", str(system.d.attestation_verifier))
    ids = sorted(system.d.asset(a).id for a in assets)
    batch = Batch(
        sequence=sequence,
        issued_at=issued_at or int(system.chain.w3.eth.get_block("latest")["timestamp"]),
        price_asset_mask=sum(1 << a for a in ids),
        prices_e18=tuple(system.price_e18(system.d.asset(a).symbol) for a in ids),
        entries=tuple(entries),
    )
    domain = Domain(system.chain.chain_id, str(system.d.attestation_verifier))
    sigs = sign(batch, domain, ENGINE_KEYS[:2])
    system.chain.send(verifier.functions.submit(batch.as_tuple(), sigs), system.d.owner, "attest")


class FlakyRpc:
    """A JSON-RPC proxy on 127.0.0.1 in front of Anvil that misbehaves on purpose.

    `send_faults` is consumed one per `eth_sendRawTransaction`: "drop" forwards the request and
    then closes the connection without answering (the node took the transaction; the client
    never hears so), "502" answers HTTP 502 without forwarding, None forwards normally.
    `delay_s` returns a latency to add before every forwarded request. `receipt_lag` hides
    each transaction's receipt from its first `receipt_lag` queries, as a node does that counts
    a nonce before it serves the receipt (Anvil between committing a block's state and storing
    its receipts; a load balancer whose replicas lag each other)."""

    def __init__(
        self,
        upstream: str,
        send_faults: Sequence[str | None] = (),
        delay_s: Callable[[], float] = lambda: 0.0,
        receipt_lag: int = 0,
    ) -> None:
        self.upstream = upstream
        self.faults = list(send_faults)
        self.receipt_lag = receipt_lag
        self._receipt_queries: dict[str, int] = {}
        self.raw_sends: list[str] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fault = proxy._fault(body)
                if fault == "lag":
                    self._answer(200, b'{"jsonrpc":"2.0","id":%s,"result":null}' % proxy._id(body))
                    return
                if fault == "502":
                    self.send_response(502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                delay = proxy.delay_s()
                if delay:
                    threading.Event().wait(delay)
                answer = proxy._session().post(
                    proxy.upstream,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                if fault == "drop":
                    self.close_connection = True
                    return
                self._answer(answer.status_code, answer.content)

            def _answer(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.delay_s = delay_s
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _session(self) -> requests.Session:
        """One keep-alive session per handler thread: a new connection per request would make
        the proxy, not the latency it injects, the bottleneck."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _fault(self, body: bytes) -> str | None:
        import json

        request = json.loads(body)
        if not isinstance(request, dict):
            return None
        if request.get("method") == "eth_sendRawTransaction":
            with self._lock:
                self.raw_sends.append(request["params"][0])
                return self.faults.pop(0) if self.faults else None
        if request.get("method") == "eth_getTransactionReceipt" and self.receipt_lag:
            with self._lock:
                tx_hash = str(request["params"][0]).lower()
                seen = self._receipt_queries[tx_hash] = self._receipt_queries.get(tx_hash, 0) + 1
                return "lag" if seen <= self.receipt_lag else None
        return None

    @staticmethod
    def _id(body: bytes) -> bytes:
        import json

        return json.dumps(json.loads(body).get("id")).encode()

    def __enter__(self) -> FlakyRpc:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def base_fee_restored(system: Client) -> Iterator[None]:
    """Anvil's snapshot revert does not restore the next block's base fee: put it back, so a
    fee spike in one test does not price the next test's transactions."""
    before = int(system.chain.w3.eth.get_block("pending")["baseFeePerGas"])
    yield
    rpc(system, "anvil_setNextBlockBaseFeePerGas", hex(before))


# ---------------------------------------------------------------------------- D03
def test_stuck_liquidation_below_the_base_fee_is_replaced_at_the_same_nonce_with_nothing_queued(
    system: Client, open_position: Callable[..., Any], others: list[str], base_fee_restored: None
) -> None:
    first = open_position(size=16, collateral_usd=5_000, who=others[0])
    second = open_position(size=15, collateral_usd=5_000, who=others[1])
    system.set_price("ETH", 2_800)  # both under MM, `first` deeper: 1,800 < 2,912; 2,000 < 2,730
    k = make_keeper(
        system, config=KeeperConfig(stuck_after_blocks=1, receipt_timeout_s=0, max_per_round=1)
    )
    start_nonce = tx_count(system, k.address)
    start_block = system.chain.w3.eth.block_number
    with manual_mining(system):
        k.step()
        (original,) = k.sender.in_flight
        # The base fee jumps above what the transaction offers: the block leaves it out.
        set_base_fee(system, original.max_fee_wei + GWEI)
        assert system.chain.w3.eth.get_transaction_count(k.address) == start_nonce

        k.step()
        (bumped,) = k.sender.in_flight
        assert bumped.nonce == original.nonce == start_nonce
        assert bumped.tx_hash != original.tx_hash
        assert bumped.max_fee_wei * 8 >= original.max_fee_wei * 9  # ≥ +12.5 %
        assert bumped.priority_fee_wei * 8 >= original.priority_fee_wei * 9
        assert bumped.max_fee_wei >= k.sender.fees().inclusion_wei
        # Nothing new was queued behind the stuck nonce, though `second` is liquidatable too.
        assert k.last_round.congested
        assert k.last_round.sent == 0
        pool = rpc(system, "txpool_content")["pending"]
        ours = {n: tx["hash"] for n, tx in pool.get(k.address.lower(), {}).items()}
        assert ours == {str(start_nonce): bumped.tx_hash}
        mine(system)

        done = k.step()  # reads the replacement's receipt, then turns to `second`
        mine(system)
    assert [(d.account, d.tx_hash) for d in done] == [(first.trader, bumped.tx_hash)]
    assert second.trader in {d.account for d in k.step()}
    events = liquidate_events(system, start_block)
    assert events[0].args["account"] == first.trader
    assert events[0].tx_hash == bumped.tx_hash
    # Every nonce the keeper used went to a liquidation: none was lost or doubled.
    assert tx_count(system, k.address) == start_nonce + len(events)
    assert {e.args["keeper"] for e in events} == {k.address}


def test_a_transaction_that_no_longer_pays_is_cancelled_by_a_no_op_at_its_nonce(
    system: Client, open_position: Callable[..., Any], others: list[str], base_fee_restored: None
) -> None:
    """D03 at the fee cap: the bump the next block needs costs more than the reward, so the
    sender spends the nonce on a 21,000-gas transfer to itself instead of leaving it stuck."""
    opened = open_position(size=15, collateral_usd=5_000, who=others[0])
    system.set_price("ETH", 2_800)
    k = make_keeper(system, config=KeeperConfig(stuck_after_blocks=1, receipt_timeout_s=0))
    start_nonce = tx_count(system, k.address)
    with manual_mining(system):
        k.step()
        (original,) = k.sender.in_flight
        assert original.fee_cap_wei < 10_000 * GWEI
        # Twice the cap: no replacement within it could be mined for blocks to come.
        set_base_fee(system, 2 * original.fee_cap_wei)
        k.step()
        (cancel,) = k.sender.in_flight
        assert cancel.cancelled
        assert cancel.nonce == original.nonce
        assert cancel.max_fee_wei * 21_000 <= original.fee_cap_wei * original.gas
        mine(system)
        assert k.step() == []
        assert k.last_round.unprofitable == 1
        assert k.last_round.sent == 0
    receipt = system.chain.w3.eth.get_transaction_receipt(cancel.tx_hash)  # type: ignore[arg-type]
    assert receipt["to"] == k.address
    assert receipt["gasUsed"] == 21_000
    assert [r.state for r in k.sender.journal.rows()] == [TxState.CANCELLED]
    assert tx_count(system, k.address) == start_nonce + 1
    assert system.position(opened.trader, "ETH-PERP") == opened.size_wad


def test_a_late_but_adequately_priced_tx_is_resent_byte_for_byte_not_replaced(
    system: Client, open_position: Callable[..., Any], others: list[str]
) -> None:
    """Missing from the pool (a node restart) while its fees still clear the next block: a
    replacement would only race a transaction that can still land, so the same bytes go out."""
    opened = open_position(size=15, collateral_usd=5_000, who=others[0])
    system.set_price("ETH", 2_800)
    k = make_keeper(system, config=KeeperConfig(stuck_after_blocks=1, receipt_timeout_s=0))
    with manual_mining(system):
        k.step()
        (sent,) = k.sender.in_flight
        rpc(system, "anvil_dropAllTransactions")
        mine(system, 2)
        k.step()
        (again,) = k.sender.in_flight
        assert (again.tx_hash, again.raw) == (sent.tx_hash, sent.raw)
        pool = rpc(system, "txpool_content")["pending"][k.address.lower()]
        assert [tx["hash"] for tx in pool.values()] == [sent.tx_hash]
        mine(system)
    assert [(d.account, d.tx_hash) for d in k.step()] == [(opened.trader, sent.tx_hash)]
    (row,) = k.sender.journal.rows()
    assert row.hashes == (sent.tx_hash,)


# ---------------------------------------------------------------------------- D05
def test_dropped_response_and_a_502_resend_the_same_signed_tx_and_one_liquidation_lands(
    system: Client, open_position: Callable[..., Any], others: list[str]
) -> None:
    opened = open_position(size=15, collateral_usd=5_000, who=others[0])
    system.set_price("ETH", 2_800)
    start_block = system.chain.w3.eth.block_number
    upstream = system.chain.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    with FlakyRpc(upstream, send_faults=["drop", "502"]) as proxy:
        k = make_keeper(system, rpc_url=proxy.url)
        start_nonce = tx_count(system, k.address)
        done = k.step()
    assert [d.account for d in done] == [opened.trader]
    # Sent three times (dropped after reaching the node, 502, accepted or known): one payload.
    assert len(proxy.raw_sends) == 3
    assert len(set(proxy.raw_sends)) == 1
    assert tx_count(system, k.address) == start_nonce + 1
    assert len(liquidate_events(system, start_block)) == 1
    assert [r.state for r in k.sender.journal.rows()] == [TxState.MINED]


def test_a_nonce_counted_before_its_receipt_is_served_is_not_taken_for_a_dropped_transaction(
    system: Client, open_position: Callable[..., Any], others: list[str]
) -> None:
    # Issue 9.6: the 5,000-account cascade once journaled a mined liquidation as `dropped`. The
    # sender had read the nonce count as used, then found no receipt of its own (a node may
    # answer the first before it serves the second) and concluded the nonce went elsewhere.
    opened = open_position(size=15, collateral_usd=5_000, who=others[0])
    system.set_price("ETH", 2_800)
    start_block = system.chain.w3.eth.block_number
    upstream = system.chain.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    with FlakyRpc(upstream, send_faults=["drop"], receipt_lag=2) as proxy:
        k = make_keeper(system, rpc_url=proxy.url)
        start_nonce = tx_count(system, k.address)
        done = k.step()
    assert [d.account for d in done] == [opened.trader]
    assert len(set(proxy.raw_sends)) == 1  # the same signed bytes only, never a second nonce
    assert tx_count(system, k.address) == start_nonce + 1
    assert len(liquidate_events(system, start_block)) == 1
    assert [r.state for r in k.sender.journal.rows()] == [TxState.MINED]


# ---------------------------------------------------------------------------- D09
def test_keeper_killed_after_sending__restart_rebroadcasts_the_same_tx_and_sends_no_duplicate(
    system: Client, open_position: Callable[..., Any], others: list[str], tmp_path: Path
) -> None:
    opened = open_position(size=15, collateral_usd=5_000, who=others[0])
    system.set_price("ETH", 2_800)
    journal = tmp_path / "journal.sqlite"
    config = KeeperConfig(receipt_timeout_s=0)
    start_block = system.chain.w3.eth.block_number
    with manual_mining(system):
        first = make_keeper(system, config=config, journal=journal)
        start_nonce = tx_count(system, first.address)
        first.step()
        (sent,) = first.sender.in_flight
        # Killed before it read a receipt; the node restarts with an empty pool.
        first.sender.journal.close()
        del first
        rpc(system, "anvil_dropAllTransactions")

        second = make_keeper(system, config=config, journal=journal)
        pool = rpc(system, "txpool_content")["pending"][second.address.lower()]
        assert {n: tx["hash"] for n, tx in pool.items()} == {str(start_nonce): sent.tx_hash}
        assert second.step() == []
        assert second.last_round.candidates == 1
        assert second.last_round.sent == 0
        mine(system)
    done = second.step()
    assert [(d.account, d.tx_hash) for d in done] == [(opened.trader, sent.tx_hash)]
    assert tx_count(system, second.address) == start_nonce + 1
    assert len(liquidate_events(system, start_block)) == 1
    (row,) = second.sender.journal.rows()
    assert (row.state, row.mined_hash, row.raw_txs) == (TxState.MINED, sent.tx_hash, (sent.raw,))


def test_keeper_killed_after_its_tx_was_mined__restart_reports_it_and_sends_nothing_again(
    system: Client, open_position: Callable[..., Any], others: list[str], tmp_path: Path
) -> None:
    opened = open_position(size=30, collateral_usd=9_000, who=others[0])
    system.set_price("ETH", 2_750)  # deep (equity 1,500 < MM/2): one liquidation closes it all
    journal = tmp_path / "journal.sqlite"
    config = KeeperConfig(receipt_timeout_s=0)
    with manual_mining(system):
        first = make_keeper(system, config=config, journal=journal)
        start_nonce = tx_count(system, first.address)
        first.step()
        (sent,) = first.sender.in_flight
        first.sender.journal.close()
        del first
        mine(system)
    second = make_keeper(system, config=config, journal=journal)
    done = second.step()
    assert [(d.account, d.tx_hash) for d in done] == [(opened.trader, sent.tx_hash)]
    assert second.last_round.sent == 0
    assert tx_count(system, second.address) == start_nonce + 1
    assert system.position(opened.trader, "ETH-PERP") == 0


def test_a_journal_refuses_another_chain_key_or_genesis_rather_than_replay_onto_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.sqlite"
    sender = to_checksum_address("0x" + "11" * 20)
    Journal(path, chain_id=31337, sender=sender, genesis="0xaa").close()
    Journal(path, chain_id=31337, sender=sender, genesis="0xAA").close()  # the same chain
    for kwargs in (
        {"chain_id": 31337, "sender": sender, "genesis": "0xbb"},  # a restarted local chain
        {"chain_id": 1, "sender": sender, "genesis": "0xaa"},
        {"chain_id": 31337, "sender": to_checksum_address("0x" + "22" * 20), "genesis": "0xaa"},
    ):
        with pytest.raises(ConfigError, match="belongs to"):
            Journal(path, **kwargs)  # type: ignore[arg-type]


def test_a_refused_transaction_leaves_no_nonce_gap_and_the_next_one_takes_its_nonce(
    system: Client, open_position: Callable[..., Any], others: list[str]
) -> None:
    opened = open_position(size=15, collateral_usd=5_000, who=others[0])
    system.set_price("ETH", 2_800)
    k = make_keeper(system, 30)
    start_nonce = tx_count(system, k.address)
    rpc(system, "anvil_setBalance", k.address, "0x0")  # it cannot pay for gas: refused
    assert k.step() == []
    assert k.last_round.sent == 0
    assert not k.sender.in_flight
    rpc(system, "anvil_setBalance", k.address, hex(10**18))
    done = k.step()
    assert [d.account for d in done] == [opened.trader]
    rows = k.sender.journal.rows()
    assert [(r.state, r.nonce) for r in rows] == [
        (TxState.REJECTED, start_nonce),
        (TxState.MINED, start_nonce),
    ]


# ---------------------------------------------------------------------------- D02
@pytest.mark.parametrize("multiple", [10, 50])
def test_base_fee_spike__keeper_reprices_liquidates_the_large_and_skips_the_small(
    system: Client, maker: str, multiple: int, base_fee_restored: None
) -> None:
    large = synthetic_accounts(f"large-{multiple}", 2)
    small = synthetic_accounts(f"small-{multiple}", 3)
    rows = [(a, 31_000 * USDC, wad(100)) for a in large]  # $300k long each
    rows += [(a, 300 * USDC, wad(1)) for a in small]  # $3k long each
    open_many(system, maker, rows)
    system.set_price("ETH", 2_800)
    set_base_fee(system, 20 * GWEI * multiple)  # ×10 / ×50 of a busy 20-gwei mainnet
    k = make_keeper(system)
    start_block = system.chain.w3.eth.block_number
    done = k.step()
    assert sorted(d.account for d in done) == sorted(large)
    assert k.last_round.unprofitable == len(small)
    for d in done:
        tx = system.chain.w3.eth.get_transaction(d.tx_hash)  # type: ignore[arg-type]
        block = system.chain.w3.eth.get_block(d.block)
        assert tx["maxFeePerGas"] >= block["baseFeePerGas"] >= 15 * GWEI * multiple
        # It never pays more for gas than it earns, even at the fee cap.
        assert tx["gas"] * tx["maxFeePerGas"] * 2_800 <= d.keeper_reward_wad
        assert 0 < d.gas_cost_wad < d.keeper_reward_wad
    assert {e.args["account"] for e in liquidate_events(system, start_block)} == set(large)
    # Back at normal fees, the small ones pay again (the large ones, half closed, go on).
    set_base_fee(system, 2 * GWEI)
    assert set(small) <= {d.account for d in k.step()}


# ---------------------------------------------------------------------------- S1 mirror
def in_force_pairs(system: Client, mirror: MarginMirror, accounts: list[str]) -> list[Any]:
    """(mirror's answer, the verifier's answer, the clearinghouse's MM) per account, at the
    latest block: the mirror must equal `requirementInForce` clause for clause."""
    mirror.sync()
    block = system.chain.w3.eth.get_block("latest")
    verifier = system.chain.contract("AttestationVerifier", str(system.d.attestation_verifier))
    prices = {a.id: system.price_e18(a.symbol) for a in system.d.assets}
    out = []
    for account in accounts:
        state = mirror.accounts[account]
        mask = 0
        for market_id, size in state.positions.items():
            if size:
                mask |= 1 << mirror.markets[market_id].oracle_asset
        static = mirror.health(account, prices)
        ours = mirror.attestations.requirement_in_force(
            account,
            state.nonce,
            mask,
            prices,
            static.initial_margin_wad,
            static.maintenance_margin_wad,
            int(block["timestamp"]),
        )
        theirs = verifier.functions.requirementInForce(
            account,
            state.nonce,
            mask,
            [prices[a] for a in range(mask.bit_length()) if mask >> a & 1],
            static.initial_margin_wad,
            static.maintenance_margin_wad,
        ).call(block_identifier=block["number"])
        health = system.health(account)
        out.append(((ours.in_force, ours.im_wad, ours.mm_wad), tuple(theirs), health))
        assert system.account(account)["nonce"] == state.nonce
    return out


def assert_in_force(system: Client, mirror: MarginMirror, expected: dict[str, bool]) -> None:
    accounts = list(expected)
    for account, (ours, theirs, health) in zip(
        accounts, in_force_pairs(system, mirror, accounts), strict=True
    ):
        assert ours == theirs, f"{account}: mirror {ours} != verifier {theirs}"
        assert (health.initial_margin_wad, health.maintenance_margin_wad) == ours[1:]
        assert ours[0] is expected[account], f"{account}: in force {ours[0]}"


def entry(system: Client, account: str, im_usd: float, mm_usd: float) -> Entry:
    nonce = system.account(account)["nonce"]
    return Entry(account, nonce, int(im_usd * 10**6), int(mm_usd * 10**6))


def test_attestation_mirror_equals_requirement_in_force_through_every_s1_clause(
    system: Client, open_position: Callable[..., Any], others: list[str]
) -> None:
    a, b, c, d = others[:4]
    for who in (a, b, c, d):
        open_position(size=10, collateral_usd=6_000, who=who)
    open_position(size="0.2", market="BTC-PERP", collateral_usd=2_000, who=b)
    mirror = MarginMirror(system.chain, system.d)
    owner = system.d.owner
    verifier = system.chain.contract("AttestationVerifier", str(system.d.attestation_verifier))
    assert_in_force(system, mirror, {a: False, b: False, c: False, d: False})

    # Within the clamp, below the floor, above the cap: all three in force, clamped as on-chain.
    submit_attestation(
        system,
        [entry(system, a, 2_000, 1_500), entry(system, b, 1, 1), entry(system, c, 1e6, 1e6)],
        sequence=1,
    )
    assert_in_force(system, mirror, {a: True, b: True, c: True, d: False})

    # Mask: B holds BTC, and a batch priced in ETH alone does not cover it.
    submit_attestation(system, [entry(system, b, 5_000, 4_000)], sequence=2, assets=("ETH",))
    assert_in_force(system, mirror, {a: True, b: False, c: True, d: False})

    # Band (100 bps): 0.5 % away holds, 1.5 % away does not, back again holds.
    system.set_price("ETH", 3_015)
    assert_in_force(system, mirror, {a: True, b: False, c: True, d: False})
    system.set_price("ETH", 3_045)
    assert_in_force(system, mirror, {a: False, b: False, c: False, d: False})
    system.set_price("ETH", 3_000)
    assert_in_force(system, mirror, {a: True, b: False, c: True, d: False})

    # Position nonce: any trade voids the account's attestation.
    system.trade("ETH-PERP", a, maker_of(system), wad(-1), system.price_e18("ETH"))
    assert_in_force(system, mirror, {a: False, b: False, c: True, d: False})

    # Age: in force at exactly max age, not one second later.
    issued = int(system.chain.w3.eth.get_block("latest")["timestamp"])
    submit_attestation(
        system, [entry(system, a, 2_500, 2_000), entry(system, c, 3_000, 2_000)], 3,
        issued_at=issued,
    )  # fmt: skip
    mine_at(system, issued + 300)
    assert_in_force(system, mirror, {a: True, b: False, c: True, d: False})
    mine_at(system, issued + 301)
    assert_in_force(system, mirror, {a: False, b: False, c: False, d: False})

    # Key epoch: adding a signer starts a new epoch and voids everything recorded before it.
    submit_attestation(system, [entry(system, a, 2_500, 2_000)], sequence=11)
    assert_in_force(system, mirror, {a: True, b: False, c: False, d: False})
    newcomer = to_checksum_address(keccak(text="another engine key")[:20])
    system.chain.send(verifier.functions.addSigner(newcomer), owner, "add signer")
    assert_in_force(system, mirror, {a: False, b: False, c: False, d: False})
    submit_attestation(system, [entry(system, a, 2_500, 2_000)], sequence=12)
    assert_in_force(system, mirror, {a: True, b: False, c: False, d: False})

    # Ring: sequence 12 + 4096 takes slot 12, so A's entry (12) loses its record ...
    submit_attestation(system, [entry(system, d, 2_500, 2_000)], sequence=12 + 4096)
    assert_in_force(system, mirror, {a: False, b: False, c: False, d: True})
    # ... and an older batch (12 again, new content for B) never evicts the newer record.
    submit_attestation(system, [entry(system, b, 5_000, 4_000)], sequence=12)
    assert_in_force(system, mirror, {a: False, b: False, c: False, d: True})
    assert verifier.functions.appliedEntry(b).call()[0] == 12


def maker_of(system: Client) -> str:
    """The `maker` fixture's account (index 5), for trades made inside a test."""
    return system.chain.accounts[5]


def mine_at(system: Client, timestamp: int) -> None:
    rpc(system, "evm_setNextBlockTimestamp", timestamp)
    mine(system)


def test_keeper_ranks_by_the_attested_requirement_in_force_not_the_static_one(
    system: Client, open_position: Callable[..., Any], others: list[str], keeper: str
) -> None:
    stricter = open_position(size=10, collateral_usd=5_000, who=others[0]).trader
    looser = open_position(size=10, collateral_usd=3_000, who=others[1]).trader
    system.set_price("ETH", 2_850)
    # Statically: `stricter` is healthy (3,500 ≥ MM 1,852), `looser` is not (1,500 < 1,852).
    # Attested: `stricter` needs MM 4,000; `looser` is held at the floor (926), so healthy.
    submit_attestation(
        system,
        [entry(system, stricter, 4_100, 4_000), entry(system, looser, 1_000, 900)],
        sequence=1,
    )
    k = Keeper(system, keeper)
    k.mirror.sync()
    prices = k.prices()
    assert not k.mirror.health(stricter, prices).liquidatable
    assert k.mirror.health(looser, prices).liquidatable
    done = k.step()
    assert [d.account for d in done] == [stricter]
    assert k.last_round.candidates == 1
    assert k.last_round.previewed == 1
    assert system.position(looser, "ETH-PERP") == wad(10)
    assert not system.health(looser).liquidatable


# ---------------------------------------------------------------------------- D01
def drain(k: Keeper, max_rounds: int) -> tuple[list[Liquidation], int]:
    """Rounds until one finds nothing to do. Returns the liquidations and the rounds used."""
    done: list[Liquidation] = []
    for n in range(1, max_rounds + 1):
        done += k.step()
        if k.last_round.sent == 0 and not k.sender.in_flight:
            return done, n
    raise AssertionError(f"still liquidating after {max_rounds} rounds: {k.last_round}")


def test_keepers_offline_through_a_50pct_crash__restart_clears_all_and_books_bounded_bad_debt(
    system: Client, maker: str, others: list[str]
) -> None:
    """D01 (MakerDAO 2020): 30 blocks of a crash from 3,000 to 1,500 with no keeper running."""
    # 10 ETH long each, with this much collateral per ETH: at 1,500 the first seven are
    # insolvent, the next three under MM but solvent, the last two healthy.
    per_eth = [300, 500, 700, 900, 1_100, 1_300, 1_450, 1_520, 1_550, 1_580, 1_700, 1_900]
    accounts = synthetic_accounts("d01", len(per_eth))
    open_many(
        system,
        maker,
        [(a, c * 10 * USDC, wad(10)) for a, c in zip(accounts, per_eth, strict=False)],
    )
    healthy = accounts[10:]
    # One account backs its perp with WETH, one holds only WETH against negative cash.
    with_weth, borrower = others[0], others[1]
    system.deposit(with_weth, "WETH", 4, mint=True)
    system.trade("ETH-PERP", with_weth, maker, wad(5), system.price_e18("ETH"))
    system.deposit(borrower, "WETH", 2, mint=True)
    system.trade("ETH-PERP", borrower, maker, wad(5), system.price_e18("ETH"))
    system.set_price("ETH", 2_500)
    system.trade("ETH-PERP", borrower, maker, wad(-5), system.price_e18("ETH"))  # cash −2,500
    everyone = [*accounts, with_weth, borrower]

    for step in range(1, 31):
        system.set_price("ETH", 2_500 - step * 1_000 // 30)
    system.set_price("ETH", 1_500)
    before = {a: system.health(a) for a in everyone}
    assert [a for a, h in before.items() if not h.liquidatable] == healthy
    assert before[borrower].equity_wad < 0
    assert before[borrower].maintenance_margin_wad == 0
    start_block = system.chain.w3.eth.block_number

    k = make_keeper(system)
    first = k.step()
    assert first, "liquidations resume in the first round after the restart"
    done, _rounds = drain(k, max_rounds=10)
    assert {d.account for d in first + done} == {*accounts[:10], with_weth}

    price = system.price_e18("ETH")
    for a in everyone:
        assert not system.health(a).liquidatable
        assert system.health(a).equity_wad >= 0  # no negative equity left unbooked
    for a in healthy:
        assert system.position(a, "ETH-PERP") == wad(10)
    events = system.chain.get_events(
        [system.d.clearinghouse], start_block + 1, system.chain.w3.eth.block_number
    )
    for e in (e for e in events if e.name == "Liquidate"):
        # The closed exposure moved at the oracle price less at most the 3 % penalty.
        closed = abs(e.args["sizeDelta"])
        assert e.args["priceE18"] == price
        assert e.args["penaltyWad"] <= -(-closed * price * 300 // 10**22)
    seized: dict[str, int] = {}
    for e in (e for e in events if e.name == "CollateralSeized"):
        seized[e.args["account"]] = seized.get(e.args["account"], 0) + e.args["valueWad"]
    resolved = [e.args for e in events if e.name == "InsolvencyResolved"]
    # The insolvent ones, and those the penalty took below zero on a full close.
    assert {*accounts[:7], with_weth, borrower} <= {r["account"] for r in resolved}
    assert not {*accounts[8:], *healthy} & {r["account"] for r in resolved}
    # The borrower had no position to liquidate: the keeper booked its debt itself.
    (booked,) = [
        e for e in events if e.name == "InsolvencyResolved" and e.args["account"] == borrower
    ]
    assert system.chain.w3.eth.get_transaction(booked.tx_hash)["from"] == k.address  # type: ignore[arg-type]
    for r in resolved:
        h = before[r["account"]]
        # I8: what the fund lost on an account is at most its shortfall when keepers returned.
        assert r["debtWad"] - seized.get(r["account"], 0) <= h.maintenance_margin_wad - h.equity_wad
        assert r["coveredWad"] + r["deficitWad"] == r["debtWad"]
    assert system.ch.functions.deficitWad().call() == sum(r["deficitWad"] for r in resolved)


# ---------------------------------------------------------------------------- D10
def test_many_positions_just_above_dust_close_in_full_at_a_profit_or_wait_for_cheaper_gas(
    system: Client, maker: str, base_fee_restored: None
) -> None:
    accounts = synthetic_accounts("d10", 20)
    # $84–$98 long each at IM exactly: at 2,850 under MM but not deep, so the close factor
    # would leave $42–$49, below the $50 dust: the contract closes each in full.
    sizes = [wad("0.0295") + i * wad("0.0002") for i in range(len(accounts))]
    open_many(
        system, maker, [(a, s * 300 // 10**12, s) for a, s in zip(accounts, sizes, strict=False)]
    )
    system.set_price("ETH", 2_850)
    k = make_keeper(system)

    set_base_fee(system, 10 * GWEI)
    assert k.step() == []
    assert k.last_round.unprofitable == len(accounts)
    assert k.last_round.sent == 0

    set_base_fee(system, GWEI // 10)
    done = k.step()
    assert sorted(d.account for d in done) == sorted(accounts)
    for d, size in zip(
        sorted(done, key=lambda d: d.account),
        [s for _, s in sorted(zip(accounts, sizes, strict=False))],
        strict=False,
    ):
        assert d.closed_size_wad == size  # in full, no dust left behind
        assert d.gas_cost_wad < d.keeper_reward_wad  # and it paid
    assert all(system.position(a, "ETH-PERP") == 0 for a in accounts)


# ---------------------------------------------------------------------------- E07
def test_worst_case_liquidation_of_8_positions_and_3_collaterals_stays_under_2pct_of_a_block(
    system: Client, maker: str, others: list[str]
) -> None:
    owner, trader = system.d.owner, others[0]
    for asset in (0, 1, 2, 0, 1, 2):  # markets 3..8 on the same three feeds
        system.chain.send(
            system.fn("listMarket", asset, 1_000, 650, 300, 200, wad(10**6), wad(10**8)),
            owner,
            "list market",
        )
    system.deposit(trader, "USDC", 10_000, mint=True)
    system.deposit(trader, "WETH", 5, mint=True)
    system.deposit(trader, "WBTC", "0.2", mint=True)
    system.deposit(maker, "USDC", 10_000_000, mint=True)
    notional = 20_000
    for market_id in range(8):
        asset = system.d.asset(market_id % 3).symbol
        price = system.price_e18(asset)
        size = notional * WAD * WAD // price
        system.chain.send(
            system.fn("settleTrade", market_id, trader, maker, size, price),
            system.d.matcher,
            "open",
        )
    # I16: a ninth position is refused when it opens.
    ninth = system.fn("settleTrade", 8, trader, maker, wad(1), system.price_e18("SOL"))
    with pytest.raises(ContractRevert) as refused:
        system.chain.send(ninth, system.d.matcher, "open a ninth")
    assert refused.value.name == "TooManyPositions"

    for symbol, price in (("ETH", 2_550), ("BTC", 51_000), ("SOL", 127.5)):  # −15 %
        system.set_price(symbol, price)
    # An attestation in force makes every health check take the verifier's full path.
    h = system.health(trader)
    submit_attestation(
        system,
        [
            entry(
                system,
                trader,
                h.initial_margin_wad * 1.2 / WAD,
                h.maintenance_margin_wad * 1.2 / WAD,
            )
        ],
        1,
    )
    assert system.health(trader).maintenance_margin_wad > h.maintenance_margin_wad
    start_block = system.chain.w3.eth.block_number

    k = make_keeper(system, config=KeeperConfig(gas_budget=600_000))
    done, _ = drain(k, max_rounds=20)
    assert len(done) >= 8
    assert k.last_round.over_budget == 0
    assert system.account(trader)["market_mask"] == 0
    block_gas_limit = 30_000_000
    gas = [d.gas_used for d in done]
    assert max(gas) < block_gas_limit * 2 // 100, gas
    events = list(liquidate_events(system, start_block))
    assert len(events) == len(done)
