"""The proof registry on a real chain: binding (P1, H01), permissionless submission (P3), both
verifiers agreeing on valid and tampered proofs (P4, H02), the price band at its edge (H04), and
every revert path. Proofs are real and cached per session (tests rebuild identical books)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import assert_revert
from py_ecc.optimized_bn128 import G1, G2, add, multiply, neg
from web3.contract import Contract

from offchain.chain import Chain
from offchain.chain.client import Client
from offchain.errors import ContractRevert
from offchain.models import Deployment
from offchain.prove.bn254 import g1_to_words, g2_to_words
from offchain.prove.layout import ACCOUNT, BATCH, public_words
from offchain.prove.model import ProvenModel
from offchain.prove.onchain import E18_PER_E8, Submission, circuit_id, prove_accounts, submit
from offchain.prove.prover import ZK_DIR, Prover
from offchain.prove.verifier import VerifyingKey, verify

Q = 21888242871839275222246405745257275088696311157297823662689037894645226208583


@pytest.fixture
def registry(chain: Chain, system: Client, proofs_deployment: Deployment) -> Contract:
    assert proofs_deployment.margin_proofs is not None
    return chain.contract("MarginProofs", proofs_deployment.margin_proofs)


@pytest.fixture
def hedged(open_position: Callable[..., object], trader: str) -> str:
    """The trader: long 2 ETH, short 0.1 BTC (an offset the model credits)."""
    open_position(size=2, market="ETH-PERP", collateral_usd=5_000)
    open_position(size="-0.1", market="BTC-PERP", collateral_usd=5_000)
    return trader


@pytest.fixture
def proven(
    chain: Chain,
    proofs_deployment: Deployment,
    proven_model: ProvenModel,
    prover: Prover,
    hedged: str,
) -> Submission:
    return prove_accounts(chain, proofs_deployment, proven_model, prover, ACCOUNT, [hedged])


def revert_of(chain: Chain, fn: object, sender: str) -> ContractRevert:
    with pytest.raises(ContractRevert) as info:
        chain.send(fn, sender, "test")
    return info.value


def test_public_inputs__contract_and_python_build_the_same_words(
    registry: Contract, proven: Submission, proven_model: ProvenModel
) -> None:
    # P1: the registry reads the book itself; the prover must arrive at the same words.
    args = proven.args()
    on_chain = registry.functions.publicInputs(args[0], args[1], args[2]).call()
    assert on_chain == public_words(ACCOUNT, proven_model.hash, proven.prices_e8, proven.statements)
    assert list(proven.proof.public) == on_chain


def test_submit__anyone__records_the_requirement_and_emits_it(
    chain: Chain,
    registry: Contract,
    proofs_deployment: Deployment,
    proven: Submission,
    others: list[str],
) -> None:
    # P3: a stranger with no role submits.
    assert proofs_deployment.margin_proofs is not None
    receipt = submit(chain, proofs_deployment.margin_proofs, proven, others[0])
    events = {e.name: e.args for e in chain.events(receipt)}
    statement = proven.statements[0]
    nonce = (
        chain.contract("Clearinghouse", proofs_deployment.clearinghouse)
        .functions.account(statement.address)
        .call()[1]
    )
    assert events["RequirementProven"]["account"].lower() == statement.address.lower()
    assert events["RequirementProven"]["mmMicroUsd"] == statement.mm_micro_usd
    assert events["RequirementProven"]["imMicroUsd"] == statement.im_micro_usd
    assert events["RequirementProven"]["positionNonce"] == nonce
    assert list(events["PricesProven"]["pricesE8"]) == list(proven.prices_e8)
    entry = registry.functions.provenEntry(statement.address).call()
    assert list(entry[:3]) == [nonce, statement.im_micro_usd, statement.mm_micro_usd]


def in_force(
    system: Client, registry: Contract, account: str, nonce_delta: int = 0
) -> tuple[bool, int, int]:
    nonce = system.ch.functions.account(account).call()[1] + nonce_delta
    prices = [system.price_e18(s) for s in ("ETH", "BTC")]  # one per asset of the mask 0b011
    call = registry.functions.provenRequirement(account, nonce, 0b011, prices, 7, 5)
    return tuple(call.call())  # type: ignore[return-value]


def test_proven_requirement__in_force_until_the_nonce_or_a_price_moves(
    chain: Chain,
    system: Client,
    registry: Contract,
    proofs_deployment: Deployment,
    proven: Submission,
    others: list[str],
) -> None:
    assert proofs_deployment.margin_proofs is not None
    submit(chain, proofs_deployment.margin_proofs, proven, others[0])
    account = proven.statements[0].address
    ok, im_wad, mm_wad = in_force(system, registry, account)
    assert ok
    assert (im_wad, mm_wad) == (
        proven.statements[0].im_micro_usd * 10**12,
        proven.statements[0].mm_micro_usd * 10**12,
    )
    # Not in force: the caller's own values come back (the attestation verifier's convention).
    assert in_force(system, registry, account, nonce_delta=1) == (False, 7, 5)  # positions moved
    system.set_price("BTC", 60_000 * 1.011)  # beyond the 1% band
    assert in_force(system, registry, account) == (False, 7, 5)


def test_submit__replayed_for_another_account__invalid_proof(
    chain: Chain, registry: Contract, proven: Submission, maker: str, others: list[str]
) -> None:
    # H01: the maker holds the opposite book; the registry binds the proof to the maker's.
    args = proven.args()
    claims = [(maker, args[1][0][1], args[1][0][2])]
    exc = revert_of(chain, registry.functions.submit(args[0], claims, args[2], args[3]), others[0])
    assert_revert(exc, "InvalidProof", circuitId=0)


def test_submit__after_a_position_change__invalid_proof(
    chain: Chain,
    registry: Contract,
    proven: Submission,
    open_position: Callable[..., object],
    others: list[str],
) -> None:
    # H01: the book the proof was made for is gone.
    open_position(size="0.5", market="ETH-PERP")
    exc = revert_of(chain, registry.functions.submit(*proven.args()), others[0])
    assert_revert(exc, "InvalidProof")


def test_submit__other_prices__invalid_proof(
    chain: Chain, registry: Contract, proven: Submission, others: list[str]
) -> None:
    # H01: one cent on ETH, well inside the band, is another statement.
    args = list(proven.args())
    args[2] = [args[2][0] + 10**6, *args[2][1:]]
    exc = revert_of(chain, registry.functions.submit(*args), others[0])
    assert_revert(exc, "InvalidProof")


def test_submit__after_a_new_model_version__invalid_proof(
    chain: Chain,
    registry: Contract,
    proven: Submission,
    proofs_deployment: Deployment,
    others: list[str],
) -> None:
    # H01: proofs are bound to the registered model's hash.
    chain.send(registry.functions.setModel(12345), proofs_deployment.owner, "set model")
    exc = revert_of(chain, registry.functions.submit(*proven.args()), others[0])
    assert_revert(exc, "InvalidProof")


def tampered(
    proof: tuple[int, ...], public: tuple[int, ...]
) -> list[tuple[str, list[int], list[int]]]:
    cases = [("valid", list(proof), list(public))]
    for i in range(8):
        cases.append((f"proof[{i}] + 1", [p + (k == i) for k, p in enumerate(proof)], list(public)))
    swapped = [proof[0], proof[1], proof[3], proof[2], proof[5], proof[4], proof[6], proof[7]]
    cases.append(("B in py-ecc's coordinate order", swapped, list(public)))
    cases.append(("A negated", [proof[0], (Q - proof[1]) % Q, *proof[2:]], list(public)))
    for i in (0, 1, len(public) - 1):
        cases.append(
            (f"public[{i}] ^ 1", list(proof), [x ^ (k == i) for k, x in enumerate(public)])
        )
    cases.append(
        (
            "public[1] + r",
            list(proof),
            [
                public[0],
                public[1]
                + 21888242871839275222246405745257275088548364400416034343698204186575808495617,
                *public[2:],
            ],
        )
    )
    return cases


def test_verifiers__valid_and_tampered_proofs__contract_and_python_agree(
    registry: Contract, chain: Chain, proven: Submission
) -> None:
    # P4, H02: every proof element and several public inputs tampered; both say no, every time.
    verifier = chain.contract("Groth16Verifier", registry.functions.circuit(0).call()[0])
    vk = VerifyingKey.load(ZK_DIR / "account.vkey.json")
    for name, proof, public in tampered(proven.proof.points, proven.proof.public):
        on_chain = verifier.functions.verifyProof(proof, public).call()
        off_chain = verify(vk, proof, public)
        assert on_chain == off_chain == (name == "valid"), name


def test_submit__price_at_the_band_edge__accepted_and_one_unit_beyond__refused(
    chain: Chain,
    system: Client,
    registry: Contract,
    proven: Submission,
    proven_model: ProvenModel,
    prover: Prover,
    others: list[str],
) -> None:
    # H04: the band is inclusive (1% of the oracle's 3,000 USD is exactly 30 USD).
    prices = list(proven.prices_e8)
    prices[0] = 3_030 * 10**8
    statement = proven.statements[0]
    r = proven_model.requirement(statement.slots, prices)
    edge_statement = replace(statement, mm_micro_usd=r.mm_micro_usd, im_micro_usd=r.im_micro_usd)
    words = public_words(ACCOUNT, proven_model.hash, prices, [edge_statement])
    edge = Submission(
        ACCOUNT, (edge_statement,), tuple(prices), prover.prove(ACCOUNT, words, proven_model.words)
    )
    beyond = list(edge.args())
    beyond[2] = [prices[0] + 1, *prices[1:]]
    exc = revert_of(chain, registry.functions.submit(*beyond), others[0])
    assert_revert(
        exc,
        "ProvenPriceOutsideBand",
        asset=0,
        provenPriceE18=(prices[0] + 1) * E18_PER_E8,
        priceBandBps=100,
    )
    chain.send(registry.functions.submit(*edge.args()), others[0], "submit at the band edge")


def test_submit__unknown_circuit__reverts(
    chain: Chain, registry: Contract, proven: Submission, others: list[str]
) -> None:
    args = list(proven.args())
    args[0] = 7
    assert_revert(
        revert_of(chain, registry.functions.submit(*args), others[0]),
        "UnknownCircuit",
        circuitId=7,
        circuitCount=2,
    )


def test_submit__claim_count_out_of_range__reverts(
    chain: Chain, registry: Contract, proven: Submission, others: list[str]
) -> None:
    args = list(proven.args())
    for claims in ([], args[1] * 2):
        exc = revert_of(
            chain, registry.functions.submit(args[0], claims, args[2], args[3]), others[0]
        )
        assert_revert(exc, "ClaimCountOutOfRange", given=len(claims), max=1)


def test_public_inputs__more_underlyings_than_the_circuit_takes__reverts(
    chain: Chain, registry: Contract, hedged: str, open_position: Callable[..., object]
) -> None:
    open_position(size=10, market="SOL-PERP")
    fn = registry.functions.publicInputs(circuit_id(BATCH), [(hedged, 0, 0)], [0] * 8)
    with pytest.raises(ContractRevert) as info:
        chain.call(fn, "public inputs")
    assert_revert(info.value, "TooManyUnderlyings", account=hedged, count=3, max=2)


def test_add_circuit__wrong_input_count__reverts(
    chain: Chain, registry: Contract, proofs_deployment: Deployment
) -> None:
    account_verifier = registry.functions.circuit(0).call()[0]
    exc = revert_of(
        chain, registry.functions.addCircuit((account_verifier, 2, 8)), proofs_deployment.owner
    )
    assert_revert(
        exc,
        "InvalidCircuit",
        publicInputs=ACCOUNT.public_inputs,
        expected=ACCOUNT.public_inputs + 4,
    )


def test_set_price_band__zero_or_above_20_percent__reverts(
    chain: Chain, registry: Contract, proofs_deployment: Deployment
) -> None:
    for band in (0, 2001):
        exc = revert_of(chain, registry.functions.setPriceBandBps(band), proofs_deployment.owner)
        assert_revert(exc, "InvalidPriceBand", priceBandBps=band)


def test_admin__not_owner__reverts(chain: Chain, registry: Contract, others: list[str]) -> None:
    exc = revert_of(chain, registry.functions.setModel(1), others[0])
    assert_revert(exc, "OwnableUnauthorizedAccount", account=others[0])


# ------------------------------------------------------------------ EIP-196/197 byte layout
def precompile(chain: Chain, address: int, words: list[int]) -> bytes:
    data = b"".join(w.to_bytes(32, "big") for w in words)
    return bytes(chain.w3.eth.call({"to": "0x" + f"{address:040x}", "data": "0x" + data.hex()}))


def test_bn254_layout__py_ecc_points__match_the_precompiles(chain: Chain, system: Client) -> None:
    p, q = multiply(G1, 5), multiply(G1, 7)
    total = precompile(chain, 0x06, [*g1_to_words(p), *g1_to_words(q)])
    assert total == b"".join(w.to_bytes(32, "big") for w in g1_to_words(add(p, q)))
    product = precompile(chain, 0x07, [*g1_to_words(p), 11])
    assert product == b"".join(w.to_bytes(32, "big") for w in g1_to_words(multiply(p, 11)))
    # e(P, Q) · e(−P, Q) = 1 holds only with G2 in EIP-197's order (imaginary part first).
    g2 = multiply(G2, 3)
    words = [*g1_to_words(p), *g2_to_words(g2), *g1_to_words(neg(p)), *g2_to_words(g2)]
    assert int.from_bytes(precompile(chain, 0x08, words), "big") == 1
    x1, x0, y1, y0 = g2_to_words(g2)
    with pytest.raises(Exception):  # noqa: B017, PT011 - the precompile fails on a point off the twist
        precompile(chain, 0x08, [*g1_to_words(p), x0, x1, y0, y1])


def test_cli_prove__one_account__proves_verifies_and_submits(
    system: Client, hedged: str, deployment: Deployment, settings: object, tmp_path: Path
) -> None:
    # `marginsync prove` as a user runs it; the registry's model is the CLI's default, so this
    # deploys a fresh registry on the session chain first.
    import subprocess
    import sys

    from offchain.settings import Settings

    assert isinstance(settings, Settings)
    deployment.save(tmp_path)  # the CLI records its registry there, not in the session's registry
    common = ["--rpc-url", settings.rpc_url, "--deployments-dir", str(tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-m", "offchain.cli", *common, "prove", hedged, "--submit"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Python verifier: valid" in proc.stdout
    assert "submitted:" in proc.stdout


def test_submit__stale_oracle__reverts_price_unavailable(
    chain: Chain, registry: Contract, proven: Submission, others: list[str]
) -> None:
    # A proof never brings its own prices past a feed the oracle refuses.
    chain.w3.provider.make_request("evm_increaseTime", [3_601])  # type: ignore[arg-type]
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    exc = revert_of(chain, registry.functions.submit(*proven.args()), others[0])
    assert_revert(exc, "PriceUnavailable", asset=0, status=4)  # STALE


def test_groth16_verifier__key_without_input_weights__reverts(
    chain: Chain, system: Client, proofs_deployment: Deployment
) -> None:
    vk = VerifyingKey.load(ZK_DIR / "account.vkey.json").contract_args()
    with pytest.raises(ContractRevert) as info:
        chain.deploy("Groth16Verifier", (*vk[:4], vk[4][:2]), sender=proofs_deployment.owner)
    assert_revert(info.value, "InvalidVerifyingKey", icWords=2)
