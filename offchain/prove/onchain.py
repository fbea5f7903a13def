"""The prover against a deployment: deploy the proof registry, read what it will bind a proof to,
prove, submit. The registry builds the public input from its own reads; this module reads the
same state the same way so that the proof it makes is the one the registry accepts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3.types import TxReceipt

from offchain.chain import Chain
from offchain.errors import ConfigError
from offchain.models import Deployment
from offchain.prove.layout import ASSETS, SHAPES, AccountStatement, CircuitShape, Slot, public_words
from offchain.prove.model import ProvenModel
from offchain.prove.prover import ZK_DIR, Proof, Prover
from offchain.prove.verifier import VerifyingKey
from offchain.risk.config import ScenarioMarginConfig

E18_PER_E8 = 10**10
DEFAULT_PRICE_BAND_BPS = 100


def circuit_id(shape: CircuitShape) -> int:
    """Circuits are registered in `SHAPES` order."""
    return list(SHAPES).index(shape.name)


def deploy_margin_proofs(
    chain: Chain,
    deployment: Deployment,
    model: ProvenModel,
    owner: str,
    zk_dir: Path = ZK_DIR,
    price_band_bps: int = DEFAULT_PRICE_BAND_BPS,
) -> Deployment:
    """One Groth16Verifier per circuit (each with this machine's verification key) and the
    registry; returns the deployment with the registry's address."""
    registry = chain.deploy(
        "MarginProofs", owner, deployment.clearinghouse, model.hash, price_band_bps, sender=owner
    )
    for shape in SHAPES.values():
        vk = VerifyingKey.load(zk_dir / f"{shape.name}.vkey.json")
        verifier = chain.deploy("Groth16Verifier", vk.contract_args(), sender=owner)
        chain.send(
            registry.functions.addCircuit((verifier.address, shape.accounts, shape.slots)),
            owner,
            f"add the {shape.name} circuit",
        )
    return deployment.model_copy(update={"margin_proofs": registry.address})


def registered_model(chain: Chain, deployment: Deployment) -> ProvenModel:
    """The published model (docs/proofs.md) over the deployment's assets, checked against the
    hash its registry holds: a proof under any other model would not verify."""
    model = ProvenModel.from_config(ScenarioMarginConfig(), [a.symbol for a in deployment.assets])
    if deployment.margin_proofs is not None:
        registry = chain.contract("MarginProofs", deployment.margin_proofs)
        registered = int(registry.functions.modelHash().call())
        if registered != model.hash:
            raise ConfigError(
                f"the registry expects model hash {registered}, the local model hashes to "
                f"{model.hash}",
                "prove with the registered model's parameters (docs/proofs.md) or register it",
            )
    return model


def set_proof_gate(chain: Chain, deployment: Deployment, owner: str, on: bool = True) -> None:
    """Points the clearinghouse at the deployment's registry (proof-gated liquidation, SPEC I34),
    or at none (`on` false: attested requirements apply as the quorum signed them)."""
    registry = str(deployment.margin_proofs) if on else "0x" + "00" * 20
    clearinghouse = chain.contract("Clearinghouse", deployment.clearinghouse)
    chain.send(clearinghouse.functions.setMarginProofs(registry), owner, "set the proof gate")


def read_slots(chain: Chain, deployment: Deployment, account: str) -> tuple[Slot, ...]:
    """The account's positions netted per underlying, ascending asset, zero nets dropped."""
    clearinghouse = chain.contract("Clearinghouse", deployment.clearinghouse)
    market_mask = clearinghouse.functions.account(account).call()[2]
    net: dict[int, int] = defaultdict(int)
    for market in (m for m in range(32) if market_mask >> m & 1):
        asset = deployment.market(market).oracle_asset
        net[asset] += int(clearinghouse.functions.position(account, market).call())
    return tuple(Slot(asset, size) for asset, size in sorted(net.items()) if size != 0)


def oracle_prices_e8(chain: Chain, deployment: Deployment, assets: set[int]) -> list[int]:
    """The oracle's price of each asset in `assets`, floored to 1e-8 USD (0 for the others)."""
    router = chain.contract("OracleRouter", deployment.oracle_router)
    return [
        int(router.functions.priceE18(a).call()) // E18_PER_E8 if a in assets else 0
        for a in range(ASSETS)
    ]


@dataclass(frozen=True)
class Submission:
    """Everything `MarginProofs.submit` takes, and what it was built from."""

    shape: CircuitShape
    statements: tuple[AccountStatement, ...]
    prices_e8: tuple[int, ...]
    proof: Proof

    @property
    def claims(self) -> list[tuple[str, int, int]]:
        return [(s.address, s.im_micro_usd, s.mm_micro_usd) for s in self.statements]

    def args(self) -> tuple[Any, ...]:
        return (circuit_id(self.shape), self.claims, list(self.prices_e8), list(self.proof.points))


def prove_accounts(
    chain: Chain,
    deployment: Deployment,
    model: ProvenModel,
    prover: Prover,
    shape: CircuitShape,
    accounts: Sequence[str],
) -> Submission:
    """Reads the accounts' positions and the oracle, computes their requirements, proves."""
    books = {a: read_slots(chain, deployment, a) for a in accounts}
    prices = oracle_prices_e8(
        chain, deployment, {s.asset for slots in books.values() for s in slots}
    )
    statements = []
    for account, slots in books.items():
        r = model.requirement(slots, prices)
        statements.append(AccountStatement(account, slots, r.mm_micro_usd, r.im_micro_usd))
    words = public_words(shape, model.hash, prices, statements)
    proof = prover.prove(shape, words, model.words)
    return Submission(shape, tuple(statements), tuple(prices), proof)


def proven_in_force(chain: Chain, deployment: Deployment, account: str) -> bool:
    """Whether the registry holds a proof for the account's current book and prices (I22)."""
    registry = chain.contract("MarginProofs", str(deployment.margin_proofs))
    clearinghouse = chain.contract("Clearinghouse", deployment.clearinghouse)
    nonce = int(clearinghouse.functions.account(account).call()[1])
    assets = [s.asset for s in read_slots(chain, deployment, account)]
    router = chain.contract("OracleRouter", deployment.oracle_router)
    prices = [int(router.functions.priceE18(a).call()) for a in assets]
    mask = sum(1 << a for a in assets)
    call = registry.functions.provenRequirement(account, nonce, mask, prices, 0, 0)
    return bool(call.call()[0])


def submit_calldata(chain: Chain, registry_address: str, submission: Submission) -> bytes:
    registry = chain.contract("MarginProofs", registry_address)
    return bytes.fromhex(
        registry.functions.submit(*submission.args())._encode_transaction_data()[2:]
    )


def submit(chain: Chain, registry_address: str, submission: Submission, sender: str) -> TxReceipt:
    registry = chain.contract("MarginProofs", registry_address)
    return chain.send(registry.functions.submit(*submission.args()), sender, "submit a proof")
