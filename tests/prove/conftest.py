"""Fixtures for the prover: one node prover per worker, proofs cached by their public input (a
test that rebuilds the same book at the same prices reuses the proof), and the proof registry
deployed on the session's system."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from offchain.chain import Chain
from offchain.chain.deploy import Roles
from offchain.models import Deployment
from offchain.prove.layout import CircuitShape
from offchain.prove.model import ProvenModel
from offchain.prove.onchain import deploy_margin_proofs
from offchain.prove.prover import Proof, Prover
from offchain.risk.config import ScenarioMarginConfig


@pytest.fixture(scope="session")
def proven_model() -> ProvenModel:
    # A hedge between BTC and ETH earns credit, so the offset's square root is exercised.
    config = ScenarioMarginConfig(correlations={"BTC/ETH": 0.8})
    return ProvenModel.from_config(config, ("ETH", "BTC", "SOL"))


class CachingProver(Prover):
    def __init__(self) -> None:
        super().__init__()
        self._proofs: dict[tuple[str, tuple[int, ...]], Proof] = {}

    def prove(self, shape: CircuitShape, public: Sequence[int], params: Sequence[int]) -> Proof:
        key = (shape.name, tuple(public))
        if key not in self._proofs:
            self._proofs[key] = super().prove(shape, public, params)
        return self._proofs[key]


@pytest.fixture(scope="session")
def prover() -> Iterator[Prover]:
    with CachingProver() as p:
        yield p


@pytest.fixture(scope="session")
def proofs_deployment(
    chain: Chain, deployment: Deployment, roles: Roles, proven_model: ProvenModel
) -> Deployment:
    return deploy_margin_proofs(chain, deployment, proven_model, roles.owner)
