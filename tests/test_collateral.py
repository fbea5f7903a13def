"""Deposits and withdrawals: events, every revert path, hostile tokens (THREATS A03, A04, A05),
donations (A06), exits with a broken oracle (A14) and the initial-margin rule on withdrawals (A15).
SPEC I3, I5, I13."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import assert_revert, make_stale
from web3.contract import Contract

from offchain.chain import Chain
from offchain.chain.client import Client, wad
from offchain.chain.deploy import Roles
from offchain.errors import ContractRevert

WAD = 10**18
USDC, WETH, WBTC = 0, 1, 2
ETH_ASSET = 0  # oracle asset id of ETH
ZERO = "0x" + "00" * 20
USDC_UNIT, WETH_UNIT, WBTC_UNIT = 10**6, 10**18, 10**8


# ---------------------------------------------------------------------------- helpers


def only_event(system: Client, receipt: Any, name: str) -> dict[str, Any]:
    found = [e.args for e in system.events(receipt) if e.name == name]
    assert len(found) == 1, f"expected one {name}, got {found}"
    return found[0]


def total_deposited(system: Client, asset_id: int) -> int:
    return int(system.ch.functions.collateral(asset_id).call()[6])


def held(token: Contract, system: Client) -> int:
    return int(token.functions.balanceOf(system.ch.address).call())


def list_token(
    system: Client,
    owner: str,
    contract: str,
    *args: Any,
    weight_bps: int = 8_000,
    cap: int = 10**30,
) -> tuple[Contract, int]:
    """Deploys a (hostile) token and lists it as collateral priced by ETH; returns it and its id."""
    token = system.chain.deploy(contract, *args, sender=owner)
    receipt = system.chain.send(
        system.ch.functions.listCollateral(token.address, ETH_ASSET, weight_bps, cap),
        owner,
        f"list {contract}",
    )
    return token, int(only_event(system, receipt, "CollateralListed")["assetId"])


def deposit_raw(
    system: Client, token: Contract, asset_id: int, account: str, amount: int, *, mint: bool = True
) -> Any:
    """Mints `amount` to `account`, approves and deposits it; returns the receipt."""
    if mint:
        system.chain.send(token.functions.mint(account, amount), account, "mint")
    system.chain.send(token.functions.approve(system.ch.address, amount), account, "approve")
    return system.chain.send(
        system.ch.functions.deposit(account, asset_id, amount), account, "deposit"
    )


def withdraw_raw(
    system: Client, asset_id: int, account: str, amount: int, to: str | None = None
) -> Any:
    return system.chain.send(
        system.ch.functions.withdraw(asset_id, amount, to or account), account, "withdraw"
    )


# ---------------------------------------------------------------------------- deposit: happy paths
def test_deposit__quote_token__credits_cash_and_emits_deposit(system: Client, trader: str) -> None:
    amount = 1_234_500_000  # 1234.5 USDC
    before = total_deposited(system, USDC)
    system.mint(trader, "USDC", "1234.5")
    system.chain.send(
        system.tokens["USDC"].functions.approve(system.ch.address, amount), trader, "approve"
    )
    receipt = system.chain.send(
        system.ch.functions.deposit(trader, USDC, amount), trader, "deposit"
    )
    assert only_event(system, receipt, "Deposit") == {
        "account": trader,
        "assetId": USDC,
        "from": trader,
        "amount": amount,
        "credited": amount,
    }
    assert system.account(trader)["cash_wad"] == 1_234_500_000 * 10**12
    assert system.balance(trader, "USDC") == amount
    assert total_deposited(system, USDC) == before + amount


def test_deposit__for_another_account__credits_that_account_and_names_the_payer(
    system: Client, trader: str, others: list[str]
) -> None:
    payer = others[0]
    system.mint(payer, "WETH", 2)
    system.chain.send(
        system.tokens["WETH"].functions.approve(system.ch.address, 2 * WETH_UNIT), payer, "approve"
    )
    receipt = system.chain.send(
        system.ch.functions.deposit(trader, WETH, 2 * WETH_UNIT), payer, "deposit"
    )
    assert only_event(system, receipt, "Deposit") == {
        "account": trader,
        "assetId": WETH,
        "from": payer,
        "amount": 2 * WETH_UNIT,
        "credited": 2 * WETH_UNIT,
    }
    assert system.balance(trader, "WETH") == 2 * WETH_UNIT
    assert system.balance(payer, "WETH") == 0
    assert system.account(trader)["collateral_mask"] == 1 << WETH
    assert total_deposited(system, WETH) == 2 * WETH_UNIT


# ---------------------------------------------------------------------------- withdraw: happy paths
def test_withdraw__non_quote_to_another_address__sends_tokens_and_emits_withdraw(
    system: Client, trader: str, others: list[str]
) -> None:
    system.deposit(trader, "WETH", 2, mint=True)
    receipt = withdraw_raw(system, WETH, trader, WETH_UNIT // 2, to=others[0])
    assert only_event(system, receipt, "Withdraw") == {
        "account": trader,
        "assetId": WETH,
        "to": others[0],
        "amount": WETH_UNIT // 2,
    }
    assert system.tokens["WETH"].functions.balanceOf(others[0]).call() == WETH_UNIT // 2
    assert system.balance(trader, "WETH") == 3 * WETH_UNIT // 2
    assert total_deposited(system, WETH) == 3 * WETH_UNIT // 2
    assert system.account(trader)["collateral_mask"] == 1 << WETH

    withdraw_raw(system, WETH, trader, 3 * WETH_UNIT // 2)
    assert system.balance(trader, "WETH") == 0
    assert system.account(trader)["collateral_mask"] == 0  # the last unit clears the bit
    assert system.tokens["WETH"].functions.balanceOf(trader).call() == 3 * WETH_UNIT // 2


def test_withdraw__quote_token__debits_cash_and_emits_withdraw(system: Client, trader: str) -> None:
    system.deposit(trader, "USDC", 1_000, mint=True)
    before = total_deposited(system, USDC)
    receipt = system.withdraw(trader, "USDC", 400)
    assert only_event(system, receipt, "Withdraw") == {
        "account": trader,
        "assetId": USDC,
        "to": trader,
        "amount": 400 * USDC_UNIT,
    }
    assert system.account(trader)["cash_wad"] == 600 * WAD
    assert system.tokens["USDC"].functions.balanceOf(trader).call() == 400 * USDC_UNIT
    assert total_deposited(system, USDC) == before - 400 * USDC_UNIT


# ---------------------------------------------------------------------------- deposit: reverts
def test_deposit__zero_amount__reverts_zero_amount(system: Client, trader: str) -> None:
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.ch.functions.deposit(trader, USDC, 0), trader, "deposit 0")
    assert_revert(e.value, "ZeroAmount")
    assert e.value.args_by_name == {}


def test_deposit__zero_account__reverts_zero_address(system: Client, trader: str) -> None:
    system.mint(trader, "USDC", 10)
    system.chain.send(
        system.tokens["USDC"].functions.approve(system.ch.address, 10**7), trader, "approve"
    )
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.ch.functions.deposit(ZERO, USDC, 10**7), trader, "deposit for 0")
    assert_revert(e.value, "ZeroAddress")
    assert e.value.args_by_name == {}


@pytest.mark.parametrize("asset_id", [3, 15, 2**256 - 1])
def test_deposit__unlisted_asset__reverts_unknown_collateral(
    system: Client, trader: str, asset_id: int
) -> None:
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.ch.functions.deposit(trader, asset_id, 1), trader, "deposit")
    assert_revert(e.value, "UnknownCollateral", assetId=asset_id)


def test_deposit__beyond_deposit_cap__reverts_deposit_cap_exceeded(
    system: Client, trader: str, others: list[str]
) -> None:
    cap = 100_000 * WBTC_UNIT  # the default WBTC cap
    system.deposit(others[0], "WBTC", 60_000, mint=True)
    system.mint(trader, "WBTC", 40_001)
    system.chain.send(
        system.tokens["WBTC"].functions.approve(system.ch.address, 40_001 * WBTC_UNIT), trader, "a"
    )
    with pytest.raises(ContractRevert) as e:
        system.chain.send(
            system.ch.functions.deposit(trader, WBTC, 40_001 * WBTC_UNIT), trader, "deposit"
        )
    assert_revert(
        e.value, "DepositCapExceeded", assetId=WBTC, totalAfter=100_001 * WBTC_UNIT, cap=cap
    )
    # Exactly up to the cap is fine.
    system.chain.send(
        system.ch.functions.deposit(trader, WBTC, 40_000 * WBTC_UNIT), trader, "deposit"
    )
    assert total_deposited(system, WBTC) == cap


def test_deposit__nothing_arrives__reverts_zero_amount(
    system: Client, roles: Roles, trader: str
) -> None:
    """A transfer that delivers 0 (here: a rebasing token whose index makes 1 wei worth 0 shares)
    credits nothing and is refused rather than recorded as a deposit."""
    token, asset_id = list_token(system, roles.owner, "RebasingToken")
    system.chain.send(token.functions.mint(trader, WAD), trader, "mint")
    system.chain.send(token.functions.rebase(30_000), trader, "rebase up")
    system.chain.send(token.functions.approve(system.ch.address, 1), trader, "approve")
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.ch.functions.deposit(trader, asset_id, 1), trader, "deposit 1 wei")
    assert_revert(e.value, "ZeroAmount")
    assert total_deposited(system, asset_id) == 0


# ---------------------------------------------------------------------------- withdraw: reverts
def test_withdraw__zero_amount__reverts_zero_amount(system: Client, trader: str) -> None:
    system.deposit(trader, "USDC", 10, mint=True)
    with pytest.raises(ContractRevert) as e:
        withdraw_raw(system, USDC, trader, 0)
    assert_revert(e.value, "ZeroAmount")
    assert e.value.args_by_name == {}


def test_withdraw__to_zero_address__reverts_zero_address(system: Client, trader: str) -> None:
    system.deposit(trader, "USDC", 10, mint=True)
    with pytest.raises(ContractRevert) as e:
        withdraw_raw(system, USDC, trader, USDC_UNIT, to=ZERO)
    assert_revert(e.value, "ZeroAddress")
    assert system.account(trader)["cash_wad"] == 10 * WAD


@pytest.mark.parametrize("asset_id", [3, 2**256 - 1])
def test_withdraw__unlisted_asset__reverts_unknown_collateral(
    system: Client, trader: str, asset_id: int
) -> None:
    with pytest.raises(ContractRevert) as e:
        withdraw_raw(system, asset_id, trader, 1)
    assert_revert(e.value, "UnknownCollateral", assetId=asset_id)


def test_withdraw__more_than_non_quote_balance__reverts_insufficient_balance(
    system: Client, trader: str, others: list[str]
) -> None:
    system.deposit(trader, "WETH", 1, mint=True)
    system.deposit(others[0], "WETH", 5, mint=True)  # the vault holds enough to pay it
    with pytest.raises(ContractRevert) as e:
        withdraw_raw(system, WETH, trader, WETH_UNIT + 1)
    assert_revert(
        e.value, "InsufficientBalance", assetId=WETH, balance=WETH_UNIT, amount=WETH_UNIT + 1
    )
    assert system.balance(trader, "WETH") == WETH_UNIT


def test_withdraw__more_than_cash_without_positions_or_collateral__reverts_insufficient_balance(
    system: Client, trader: str
) -> None:
    system.deposit(trader, "USDC", 100, mint=True)
    with pytest.raises(ContractRevert) as e:
        system.withdraw(trader, "USDC", "100.000001")
    assert_revert(
        e.value, "InsufficientBalance", assetId=USDC, balance=100 * USDC_UNIT, amount=100_000_001
    )
    assert system.account(trader)["cash_wad"] == 100 * WAD


def test_withdraw__below_initial_margin_with_position__reverts_insufficient_margin(
    system: Client, open_position: Callable[..., Any]
) -> None:
    """# I5: 10 ETH at 3000 needs IM 3000 on equity 5000; 2000 USDC may leave, not a unit more."""
    opened = open_position(size=10, collateral_usd=5_000)
    with pytest.raises(ContractRevert) as e:
        system.withdraw(opened.trader, "USDC", "2000.000001")
    assert_revert(
        e.value,
        "InsufficientMargin",
        account=opened.trader,
        equityWad=2_999_999_999 * 10**12,
        initialMarginWad=3_000 * WAD,
    )
    system.withdraw(opened.trader, "USDC", 2_000)
    h = system.health(opened.trader)
    assert h.equity_wad == h.initial_margin_wad == 3_000 * WAD


def test_withdraw__borrowing_beyond_weth_haircut_value__reverts_insufficient_margin(
    system: Client, trader: str, maker: str
) -> None:
    """# I5: without positions, negative cash is a loan against collateral at its haircut value
    (1 WETH × 3000 × 80% = 2400): it may be borrowed in full but not beyond."""
    system.deposit(maker, "USDC", 10_000, mint=True)
    system.deposit(trader, "WETH", 1, mint=True)
    with pytest.raises(ContractRevert) as e:
        system.withdraw(trader, "USDC", "2400.000001")
    assert_revert(
        e.value, "InsufficientMargin", account=trader, equityWad=-(10**12), initialMarginWad=0
    )
    system.withdraw(trader, "USDC", 2_400)
    assert system.account(trader)["cash_wad"] == -2_400 * WAD
    assert system.health(trader).equity_wad == 0


# ---------------------------------------------------------------------------- A03 fee on transfer
def test_deposit__fee_on_transfer_token__credits_what_arrived(
    system: Client, roles: Roles, trader: str
) -> None:
    """# A03 / I3: 100 sent, 99 arrive: the account gets 99 and totals match the vault's balance."""
    token, asset_id = list_token(system, roles.owner, "FeeOnTransferToken")
    receipt = deposit_raw(system, token, asset_id, trader, 100 * WAD)
    assert only_event(system, receipt, "Deposit") == {
        "account": trader,
        "assetId": asset_id,
        "from": trader,
        "amount": 100 * WAD,
        "credited": 99 * WAD,
    }
    assert system.ch.functions.collateralBalance(trader, asset_id).call() == 99 * WAD
    assert total_deposited(system, asset_id) == held(token, system) == 99 * WAD
    # The health function values what is held, not what was sent: 99 × 3000 × 80%.
    assert system.health(trader).equity_wad == 99 * 3_000 * 8 * WAD // 10

    with pytest.raises(ContractRevert) as e:
        withdraw_raw(system, asset_id, trader, 100 * WAD)
    assert_revert(
        e.value, "InsufficientBalance", assetId=asset_id, balance=99 * WAD, amount=100 * WAD
    )
    withdraw_raw(system, asset_id, trader, 99 * WAD)
    assert total_deposited(system, asset_id) == held(token, system) == 0
    assert (
        token.functions.balanceOf(trader).call() == 99 * WAD - 99 * WAD // 100
    )  # the token's own fee


# ---------------------------------------------------------------------------- A04 odd returns
def test_deposit_and_withdraw__token_without_return_value__work(
    system: Client, roles: Roles, trader: str
) -> None:
    """# A04: USDT-style `transfer` returning nothing is handled by SafeERC20."""
    token, asset_id = list_token(system, roles.owner, "NoReturnToken")
    receipt = deposit_raw(system, token, asset_id, trader, 500 * USDC_UNIT)
    assert only_event(system, receipt, "Deposit")["credited"] == 500 * USDC_UNIT
    assert system.ch.functions.collateralBalance(trader, asset_id).call() == 500 * USDC_UNIT
    withdraw_raw(system, asset_id, trader, 200 * USDC_UNIT)
    assert token.functions.balanceOf(trader).call() == 200 * USDC_UNIT
    assert total_deposited(system, asset_id) == held(token, system) == 300 * USDC_UNIT


def test_deposit__token_returning_false__reverts_safe_erc20_failed_operation_and_credits_nothing(
    system: Client, roles: Roles, trader: str
) -> None:
    """# A04: a `false` return is a failure, never a phantom credit."""
    token, asset_id = list_token(system, roles.owner, "FalseReturnToken")
    system.chain.send(token.functions.mint(trader, 100 * WAD), trader, "mint")
    system.chain.send(token.functions.approve(system.ch.address, 100 * WAD), trader, "approve")
    system.chain.send(token.functions.setFailing(True), roles.owner, "fail")
    with pytest.raises(ContractRevert) as e:
        system.chain.send(
            system.ch.functions.deposit(trader, asset_id, 100 * WAD), trader, "deposit"
        )
    assert_revert(e.value, "SafeERC20FailedOperation", token=token.address)
    assert system.ch.functions.collateralBalance(trader, asset_id).call() == 0
    assert total_deposited(system, asset_id) == 0
    assert token.functions.balanceOf(trader).call() == 100 * WAD


def test_withdraw__token_returning_false__reverts_safe_erc20_failed_operation_and_keeps_the_balance(
    system: Client, roles: Roles, trader: str
) -> None:
    token, asset_id = list_token(system, roles.owner, "FalseReturnToken")
    deposit_raw(system, token, asset_id, trader, 100 * WAD)
    system.chain.send(token.functions.setFailing(True), roles.owner, "fail")
    with pytest.raises(ContractRevert) as e:
        withdraw_raw(system, asset_id, trader, 40 * WAD)
    assert_revert(e.value, "SafeERC20FailedOperation", token=token.address)
    assert system.ch.functions.collateralBalance(trader, asset_id).call() == 100 * WAD
    assert total_deposited(system, asset_id) == held(token, system) == 100 * WAD


# ---------------------------------------------------------------------------- A05 rebasing
def test_withdraw__rebasing_token_shrank__reverts_collateral_shortfall_for_everyone(
    system: Client, roles: Roles, trader: str, maker: str, others: list[str]
) -> None:
    """# A05 / I3: after a 50% negative rebase the vault holds 100 against 200 owed. Nobody may
    withdraw: the first leaver would otherwise take the others' tokens. A newcomer's deposit does
    not re-open the door to them either."""
    token, asset_id = list_token(system, roles.owner, "RebasingToken")
    deposit_raw(system, token, asset_id, trader, 100 * WAD)
    deposit_raw(system, token, asset_id, maker, 100 * WAD)
    system.chain.send(token.functions.mint(others[0], 200 * WAD), roles.owner, "mint")
    system.chain.send(token.functions.rebase(5_000), roles.owner, "negative rebase")
    assert held(token, system) == 100 * WAD

    for account, amount in ((trader, 100 * WAD), (trader, 1), (maker, 50 * WAD)):
        with pytest.raises(ContractRevert) as e:
            withdraw_raw(system, asset_id, account, amount)
        assert_revert(
            e.value,
            "CollateralShortfall",
            assetId=asset_id,
            heldBalance=100 * WAD,
            trackedBalance=200 * WAD,
        )

    newcomer = others[0]
    assert token.functions.balanceOf(newcomer).call() == 100 * WAD  # 200 minted before the rebase
    deposit_raw(system, token, asset_id, newcomer, 100 * WAD, mint=False)
    with pytest.raises(ContractRevert) as e:
        withdraw_raw(system, asset_id, trader, 100 * WAD)
    assert_revert(
        e.value,
        "CollateralShortfall",
        assetId=asset_id,
        heldBalance=200 * WAD,
        trackedBalance=300 * WAD,
    )
    assert system.ch.functions.collateralBalance(trader, asset_id).call() == 100 * WAD
    assert system.ch.functions.collateralBalance(newcomer, asset_id).call() == 100 * WAD


# ---------------------------------------------------------------------------- A06 donations
def test_donation__changes_no_accounts_health_and_keeps_i3_totals(
    system: Client, chain: Chain, roles: Roles, open_position: Callable[..., Any], others: list[str]
) -> None:
    """# A06 / I3: tokens sent straight to the clearinghouse are nobody's: every account's health
    and every `totalDeposited` stay put, and Σ balances = totalDeposited ≤ held still holds."""
    opened = open_position(size=10, collateral_usd=5_000)
    system.deposit(opened.trader, "WETH", 2, mint=True)
    system.deposit(others[0], "WBTC", 1, mint=True)
    accounts = [opened.trader, opened.maker, roles.insurance_fund, others[0]]
    healths = {a: system.health(a) for a in accounts}
    totals = {i: total_deposited(system, i) for i in (USDC, WETH, WBTC)}

    donor = others[1]
    for symbol, amount in (("USDC", 1_000_000), ("WETH", 500), ("WBTC", 20)):
        system.mint(donor, symbol, amount)
        raw = amount * 10 ** system.d.collateral(symbol).decimals
        chain.send(
            system.tokens[symbol].functions.transfer(system.ch.address, raw), donor, "donate"
        )

    assert {a: system.health(a) for a in accounts} == healths
    assert {i: total_deposited(system, i) for i in (USDC, WETH, WBTC)} == totals
    for symbol, asset_id in (("WETH", WETH), ("WBTC", WBTC)):
        balances = sum(system.balance(a, symbol) for a in [*accounts, donor])
        assert balances == totals[asset_id] < held(system.tokens[symbol], system)
    assert system.balance(donor, "USDC") == 0
    system.withdraw(others[0], "WBTC", 1)  # the backing check still passes for honest exits
    assert system.balance(others[0], "WBTC") == 0


# ---------------------------------------------------------------------------- A14 exits
def break_eth_feed(system: Client, owner: str, fault: str) -> None:
    feed = system.feeds["ETH"]
    send = lambda fn: system.chain.send(fn, owner, fault)  # noqa: E731
    if fault == "stale":
        make_stale(system, "ETH")
    elif fault == "reverting":
        send(feed.functions.setReverts(True))
    elif fault == "zero answer":
        send(feed.functions.setAnswer(0))
    elif fault == "out of bounds":
        send(
            system.router.functions.setFeed(
                ETH_ASSET, feed.address, 3_600, 200, 3_001 * WAD, 10**27
            )
        )
    with pytest.raises(ContractRevert):
        system.price_e18("ETH")


@pytest.mark.parametrize("fault", ["stale", "reverting", "zero answer", "out of bounds"])
def test_exits__oracle_unusable__deposit_close_and_withdraw_all_succeed(
    system: Client, roles: Roles, open_position: Callable[..., Any], fault: str
) -> None:
    """# A14 / I13: with the ETH feed unusable, the trader can still add margin, close the ETH
    position (both sides reduce) and then take out everything, WETH included (priced by ETH)."""
    opened = open_position(size=10, collateral_usd=5_000)
    trader = opened.trader
    system.deposit(trader, "WETH", 1, mint=True)
    break_eth_feed(system, roles.owner, fault)

    assert system.deposit(trader, "USDC", 500, mint=True) == 500 * USDC_UNIT
    system.trade("ETH-PERP", trader, opened.maker, -opened.size_wad, opened.price_e18)
    assert system.position(trader, "ETH-PERP") == 0
    assert system.account(trader)["market_mask"] == 0
    system.withdraw(trader, "USDC", 5_500)
    system.withdraw(trader, "WETH", 1)
    assert system.account(trader)["cash_wad"] == 0
    assert system.balance(trader, "WETH") == 0
    assert system.tokens["WETH"].functions.balanceOf(trader).call() == WETH_UNIT


def test_withdraw__no_positions_and_every_feed_reverting__needs_no_price(
    system: Client, roles: Roles, trader: str
) -> None:
    """# I13: an account with no positions and cash ≥ 0 withdraws without reading a price."""
    system.deposit(trader, "USDC", 1_000, mint=True)
    system.deposit(trader, "WETH", 3, mint=True)
    system.deposit(trader, "WBTC", "0.5", mint=True)
    for symbol in ("ETH", "BTC", "SOL"):
        system.chain.send(
            system.feeds[symbol].functions.setReverts(True), roles.owner, "feed reverts"
        )
    assert system.chain.call(system.router.functions.tryPriceE18(1), "BTC")[1] != 0
    system.withdraw(trader, "WETH", 3)
    system.withdraw(trader, "WBTC", "0.5")
    system.withdraw(trader, "USDC", 1_000)
    assert system.account(trader) == {
        "cash_wad": 0,
        "nonce": 0,
        "market_mask": 0,
        "collateral_mask": 0,
    }


# ---------------------------------------------------------------------------- A15 profit withdrawal
def test_withdraw__unrealised_profit_down_to_initial_margin__allowed_but_not_below(
    system: Client, open_position: Callable[..., Any]
) -> None:
    """# A15 / I5: long 10 ETH from 3000 to 3300 → equity 8000, IM 3300, MM 2145. Withdrawing
    down to MM (Mango 2022) is refused, one micro-USDC below IM is refused, exactly IM is
    allowed."""
    opened = open_position(size=10, collateral_usd=5_000)
    system.set_price("ETH", 3_300)
    h = system.health(opened.trader)
    assert (h.equity_wad, h.initial_margin_wad, h.maintenance_margin_wad) == (
        8_000 * WAD,
        3_300 * WAD,
        2_145 * WAD,
    )

    with pytest.raises(ContractRevert) as e:
        system.withdraw(opened.trader, "USDC", 8_000 - 2_145)
    assert_revert(
        e.value,
        "InsufficientMargin",
        account=opened.trader,
        equityWad=2_145 * WAD,
        initialMarginWad=3_300 * WAD,
    )
    with pytest.raises(ContractRevert) as e:
        system.withdraw(opened.trader, "USDC", "4700.000001")
    assert_revert(
        e.value, "InsufficientMargin", equityWad=3_300 * WAD - 10**12, initialMarginWad=3_300 * WAD
    )
    system.withdraw(opened.trader, "USDC", 4_700)
    h = system.health(opened.trader)
    assert h.equity_wad == h.initial_margin_wad == 3_300 * WAD
    assert system.tokens["USDC"].functions.balanceOf(opened.trader).call() == 4_700 * USDC_UNIT
    with pytest.raises(ContractRevert) as e:
        system.withdraw(opened.trader, "USDC", "0.000001")
    assert_revert(e.value, "InsufficientMargin", equityWad=3_300 * WAD - 10**12)


def test_withdraw__position_open_with_weth_collateral__needs_initial_margin_on_haircut_value(
    system: Client, trader: str, maker: str
) -> None:
    """# I5: collateral counts at its haircut (80%) for the withdrawal check."""
    system.deposit(maker, "USDC", 1_000_000, mint=True)
    system.deposit(trader, "WETH", 2, mint=True)  # 2 × 3000 × 80% = 4800 of equity
    system.trade("ETH-PERP", trader, maker, wad(10), 3_000 * WAD)  # IM 3000
    # Leaving 1.25 WETH keeps 3000 = IM; 0.75 + 1 wei is too much.
    with pytest.raises(ContractRevert) as e:
        system.chain.send(
            system.ch.functions.withdraw(WETH, 3 * WETH_UNIT // 4 + 1, trader), trader, "w"
        )
    assert_revert(e.value, "InsufficientMargin", account=trader, initialMarginWad=3_000 * WAD)
    assert e.value.args_by_name["equityWad"] < 3_000 * WAD
    system.withdraw(trader, "WETH", "0.75")
    assert system.health(trader).equity_wad == 3_000 * WAD
