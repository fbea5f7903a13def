"""`marginsync bench quorum`: the gas of one quorum check, ECDSA k-of-n against one BLS12-381
aggregate certificate, for k in {1, 3, 5, 11, 21, 31, 64} out of a committee of 64.

What each figure covers (both exclude the 21,000 gas every transaction pays):
- `ecdsa.k<k>.verify_gas`: what k signatures add to `AttestationVerifier.submit` of a one-entry
  batch, their calldata included: submit(k) − submit(1) + [submit(2) − submit(1)], i.e. the
  measured cost of signatures 2..k plus the first one priced like the second. `submit_gas` is
  the whole transaction.
- `bls.k<k>.verify_gas`: a transaction calling `CommitteeRegistry.verify` for a certificate signed
  by k of the 64 members (a seeded random choice), minus 21,000: calldata, the committee slot, the
  key blob, the signers' aggregate key, hash to G1, pairing. `parts` splits it by precompile, as
  traced, and `other` is the rest (calldata, storage, code copies, EVM work).
- `bls.k<k>.verify_gas_cached`: the same certificate once its signer set is cached
  (`cacheSignerSet`, which costs `cache_signer_set_gas` once, transaction base included): no G2
  addition, one stored aggregate key read instead.
The crossover is the smallest k at which ECDSA costs more, between measured points by linear
interpolation (`crossover_k` against uncached BLS, `crossover_k_cached` against a cached set).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from offchain.attest import Batch, Domain, Entry, address_of, sign
from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.chain.deploy import dev_engine_keys
from offchain.committee import bls
from offchain.committee.registry import Certificate, Registry
from offchain.models import AttestationSpec
from offchain.settings import Settings

KS = (1, 3, 5, 11, 21, 31, 64)
COMMITTEE = 64
GOAL_BLS_VERIFY_GAS = 150_000
TX_BASE_GAS = 21_000
PRECOMPILES = {
    0x02: "sha256",
    0x05: "modexp",
    0x0B: "g1_add",
    0x0D: "g2_add",
    0x0F: "pairing",
    0x10: "map_fp_to_g1",
}


def _snapshot(chain: Chain) -> str:
    return str(chain.w3.provider.make_request("evm_snapshot", [])["result"])  # type: ignore[arg-type]


def _revert(chain: Chain, snapshot: str) -> None:
    chain.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]


def measure_ecdsa(chain: Chain, owner: str, ks: tuple[int, ...]) -> dict[int, int]:
    """Gas of `submit` with a one-entry batch and exactly k signatures, per k (and k = 2)."""
    keys = dev_engine_keys(COMMITTEE)
    signers = [address_of(bytes.fromhex(k[2:])) for k in keys]
    params = AttestationSpec().params_tuple()
    verifier = chain.deploy("AttestationVerifier", owner, signers, 1, params, sender=owner)
    domain = Domain(chain.chain_id, verifier.address)
    gas: dict[int, int] = {}
    for k in sorted({*ks, 1, 2}):
        snapshot = _snapshot(chain)
        chain.send(verifier.functions.setThreshold(k), owner, "set threshold")
        now = int(chain.w3.eth.get_block("latest")["timestamp"])
        batch = Batch(1, now, 1, (2_000 * 10**18,), (Entry(owner, 0, 1_000_000, 600_000),))
        fn = verifier.functions.submit(batch.as_tuple(), sign(batch, domain, keys[:k]))
        gas[k] = int(chain.send(fn, owner, "submit")["gasUsed"])
        _revert(chain, snapshot)
    return gas


def _precompile_gas(chain: Chain, tx_hash: bytes) -> dict[str, int]:
    trace = chain.w3.provider.make_request(
        "debug_traceTransaction",  # type: ignore[arg-type]
        ["0x" + tx_hash.hex(), {"tracer": "callTracer"}],
    )["result"]
    parts = dict.fromkeys(PRECOMPILES.values(), 0)
    for call in trace.get("calls", []):
        name = PRECOMPILES.get(int(call["to"], 16))
        if name:
            parts[name] += int(call["gasUsed"], 16)
    return parts


def measure_bls(chain: Chain, owner: str, ks: tuple[int, ...]) -> dict[int, dict[str, Any]]:
    members = bls.dev_secret_keys(COMMITTEE)
    registry = Registry.deploy(chain, owner, members, 1)
    message = b"\x5a" * 32
    out: dict[int, dict[str, Any]] = {}
    for k in ks:
        signers = sorted(random.Random(k).sample(range(COMMITTEE), k))
        signature = bls.aggregate_signatures([members[i].sign(message) for i in signers])
        cert = Certificate(message, sum(1 << i for i in signers), signature)
        registry.verify(cert)  # pre-flight: a failure here is a bug, not a figure
        receipt = chain.send(registry.contract.functions.verify(*cert.as_args()), owner, "verify")
        verify_gas = int(receipt["gasUsed"]) - TX_BASE_GAS
        parts = _precompile_gas(chain, bytes(receipt["transactionHash"]))
        parts["other"] = verify_gas - sum(parts.values())
        cache_gas = int(registry.cache_signer_set(cert.signer_bitmap, owner)["gasUsed"])
        cached = chain.send(registry.contract.functions.verify(*cert.as_args()), owner, "verify")
        out[k] = {
            "verify_gas": verify_gas,
            "verify_gas_cached": int(cached["gasUsed"]) - TX_BASE_GAS,
            "cache_signer_set_gas": cache_gas,
            "tx_gas": int(receipt["gasUsed"]),
            "g2_additions": min(k - 1, COMMITTEE - k),
            "parts": parts,
        }
    return out


def crossover(ks: list[int], ecdsa: list[int], bls_gas: list[int]) -> int | None:
    """The smallest integer k where ECDSA (interpolated linearly) costs more than BLS."""
    for k in range(ks[0], ks[-1] + 1):
        i = max(j for j in range(len(ks)) if ks[j] <= k)
        if ks[i] == k:
            e, b = float(ecdsa[i]), float(bls_gas[i])
        else:
            t = (k - ks[i]) / (ks[i + 1] - ks[i])
            e = ecdsa[i] + t * (ecdsa[i + 1] - ecdsa[i])
            b = bls_gas[i] + t * (bls_gas[i + 1] - bls_gas[i])
        if e > b:
            return k
    return None


def run(json_path: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    console.print(
        f"bench quorum: starting Anvil, {COMMITTEE} ECDSA signers and {COMMITTEE} BLS members…"
    )
    with Anvil(accounts=4) as node:
        chain = Chain.connect(Settings(rpc_url=node.url))
        owner = chain.accounts[0]
        submit = measure_ecdsa(chain, owner, KS)
        bls_by_k = measure_bls(chain, owner, KS)
    first = submit[2] - submit[1]
    ecdsa = {k: {"verify_gas": submit[k] - submit[1] + first, "submit_gas": submit[k]} for k in KS}
    ks = list(KS)
    cross = crossover(
        ks, [ecdsa[k]["verify_gas"] for k in ks], [bls_by_k[k]["verify_gas"] for k in ks]
    )
    cross_cached = crossover(
        ks, [ecdsa[k]["verify_gas"] for k in ks], [bls_by_k[k]["verify_gas_cached"] for k in ks]
    )
    result: dict[str, Any] = {
        "committee_size": COMMITTEE,
        "ecdsa": {f"k{k}": ecdsa[k] for k in KS},
        "bls": {f"k{k}": bls_by_k[k] for k in KS},
        "crossover_k": cross,
        "crossover_k_cached": cross_cached,
        "goal": {
            "bls_verify_gas_max": GOAL_BLS_VERIFY_GAS,
            "met": {f"k{k}": bls_by_k[k]["verify_gas"] <= GOAL_BLS_VERIFY_GAS for k in KS},
            "met_cached": {
                f"k{k}": bls_by_k[k]["verify_gas_cached"] <= GOAL_BLS_VERIFY_GAS for k in KS
            },
        },
    }
    table = Table(title=f"gas of one quorum check, k of {COMMITTEE} (excluding the 21,000 tx base)")
    columns = ("k", "ECDSA", "BLS", "G2 adds", "pairing", "other", "BLS cached set")
    for column in columns:
        table.add_column(column, justify="right")
    for k in KS:
        b = bls_by_k[k]
        mark = "✓" if b["verify_gas"] <= GOAL_BLS_VERIFY_GAS else "✗"
        cached_mark = "✓" if b["verify_gas_cached"] <= GOAL_BLS_VERIFY_GAS else "✗"
        table.add_row(
            str(k),
            f"{ecdsa[k]['verify_gas']:,}",
            f"{b['verify_gas']:,} {mark}",
            str(b["g2_additions"]),
            f"{b['parts']['pairing']:,}",
            f"{b['parts']['other']:,}",
            f"{b['verify_gas_cached']:,} {cached_mark}",
        )
    console.print(table)
    console.print(
        f"crossover: BLS is cheaper from k = {cross} (k = {cross_cached} with a cached set); "
        f"BLS goal ≤ {GOAL_BLS_VERIFY_GAS:,} gas per certificate"
    )
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {json_path}")
    return result
