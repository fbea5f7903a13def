"""The clearinghouse and its liquidation module: room to grow under the code-size limit, one
storage reached by `delegatecall`, and the wiring checks (ModuleMismatch, OnlySelf)."""

from __future__ import annotations

import pytest
from helpers import assert_revert

from offchain.chain.client import Client
from offchain.chain.deploy import Roles
from offchain.errors import ContractRevert
from offchain.models import SystemSpec

CODE_SIZE_LIMIT = 24_576  # EIP-170
ROOM_TO_GROW = 4_096  # issue 8.7: funding, insurance/ADL, proof-gated liquidation, certificates


def test_deployed_code__clearinghouse_leaves_4_kb_and_the_modules_fit(system: Client) -> None:
    w3 = system.chain.w3
    assert len(w3.eth.get_code(system.ch.address)) <= CODE_SIZE_LIMIT - ROOM_TO_GROW
    for module in (
        system.ch.functions.liquidationModule().call(),
        system.ch.functions.fundingModule().call(),
    ):
        assert len(w3.eth.get_code(module)) <= CODE_SIZE_LIMIT - ROOM_TO_GROW


@pytest.mark.parametrize("artifact", ["LiquidationModule", "FundingModule"])
def test_constructor__module_with_another_insurance_fund__reverts_module_mismatch(
    system: Client, roles: Roles, trader: str, artifact: str
) -> None:
    """Each module's oracle and insurance fund are immutables in its own code: a liquidation
    module built for another deployment would liquidate into the wrong backstop, a funding
    module would settle the wrong account's funding."""
    module = system.chain.deploy(artifact, system.router.address, trader, sender=roles.owner)
    modules = {
        "LiquidationModule": system.ch.functions.liquidationModule().call(),
        "FundingModule": system.ch.functions.fundingModule().call(),
    }
    modules[artifact] = module.address
    with pytest.raises(ContractRevert) as e:
        system.chain.deploy(
            "Clearinghouse",
            roles.owner,
            system.router.address,
            system.tokens["USDC"].address,
            10**18,
            roles.insurance_fund,
            SystemSpec().liquidation.as_tuple(),
            modules["LiquidationModule"],
            modules["FundingModule"],
            sender=roles.owner,
        )
    assert_revert(e.value, "ModuleMismatch", module=module.address)


def test_view_delegate__called_from_outside__reverts_only_self(system: Client, trader: str) -> None:
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.ch.functions.viewDelegate(), trader, "view delegate")
    assert_revert(e.value, "OnlySelf", caller=trader)


def test_module__called_directly__sees_its_own_empty_storage_not_the_clearinghouses(
    system: Client, open_position, keeper: str
) -> None:
    """The module keeps no state: called at its own address it finds no market and no position,
    while the same call through the clearinghouse sees the real book."""
    opened = open_position(size=10)
    module = system.chain.contract(
        "LiquidationModule", system.ch.functions.liquidationModule().call()
    )
    assert module.functions.previewLiquidation(opened.trader, 0).call()[0] == 3  # UNKNOWN_MARKET
    assert system.preview(opened.trader, "ETH-PERP").status_name == "HEALTHY"
    with pytest.raises(ContractRevert) as e:
        system.chain.send(module.functions.liquidate(opened.trader, 0, 1), keeper, "direct")
    assert_revert(e.value, "UnknownMarket", marketId=0)
