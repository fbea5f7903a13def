"""Administration: who may call each privileged setter (THREATS A17), the bounds every parameter
is held to and the events they emit, the guardian's pause (B12) and liquidations of accounts whose
token is blocklisted (A18). SPEC trust assumptions, I7, I11, I13, I17."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import assert_revert, fund, usdc
from web3.contract import Contract

from offchain.chain.client import Client, wad
from offchain.chain.deploy import Roles
from offchain.errors import ContractRevert

WAD = 10**18
ZERO = "0x" + "00" * 20
MAX_COLLATERALS, MAX_MARKETS = 16, 32
ETH_ASSET, SOL_ASSET = 0, 2
# closeFactorBps, fullLiquidationHealthBps, keeperShareBps, maxPositionsPerAccount,
# minPositionNotionalWad, keeperRewardCapWad
DEFAULT_LIQUIDATION = (5_000, 5_000, 3_000, 8, 50 * WAD, 1_000 * WAD)
# ETH-PERP as deployed: imBps, mmBps, penaltyBps, bandBps, maxPositionSize, openInterestCap
ETH_PERP = (1_000, 650, 300, 200, 10_000 * WAD, 1_000_000 * WAD)


# ---------------------------------------------------------------------------- helpers


def events(system: Client, receipt: Any, name: str) -> list[dict[str, Any]]:
    return [e.args for e in system.events(receipt) if e.name == name]


def send(system: Client, contract: Contract, fn: str, *args: Any, sender: str) -> Any:
    return system.chain.send(getattr(contract.functions, fn)(*args), sender, fn)


def send_many(system: Client, calls: list[Any], sender: str) -> list[Any]:
    """Bulk setup: sends every call without a pre-flight, then checks each one was mined OK."""
    hashes = [fn.transact({"from": sender, "gas": 5_000_000}) for fn in calls]
    w3 = system.chain.w3
    receipts = [w3.eth.wait_for_transaction_receipt(h, poll_latency=0.01) for h in hashes]
    assert all(r["status"] == 1 for r in receipts)
    return receipts


def new_token(system: Client, owner: str, decimals: int = 18) -> Contract:
    return system.chain.deploy("MockERC20", "Token", "TKN", decimals, sender=owner)


# ---------------------------------------------------------------------------- A17 access control
CLEARINGHOUSE_SETTERS: list[tuple[str, Callable[[Client, str], list[Any]]]] = [
    # A token never listed: the owner's positive control must not trip CollateralAlreadyListed.
    ("listCollateral", lambda s, c: [new_token(s, s.d.owner).address, ETH_ASSET, 8_000, 1]),
    ("configureCollateral", lambda s, c: [1, 10_000, 2**128 - 1]),
    ("listMarket", lambda s, c: [ETH_ASSET, *ETH_PERP]),
    ("configureMarket", lambda s, c: [0, 1_000, 650, 1, 1, 2**128 - 1, 2**128 - 1]),
    ("configureLiquidation", lambda s, c: [(10_000, 10_000, 10_000, 32, 0, 2**96 - 1)]),
    ("setMatcher", lambda s, c: [c, True]),
    ("setAttestor", lambda s, c: [ZERO]),
    ("setGuardian", lambda s, c: [c]),
    ("unpause", lambda s, c: []),
    ("transferOwnership", lambda s, c: [c]),
    ("renounceOwnership", lambda s, c: []),
]
ROUTER_SETTERS: list[tuple[str, Callable[[Client, str], list[Any]]]] = [
    ("setFeed", lambda s, c: [ETH_ASSET, s.feeds["SOL"].address, 3_600, 200, 1, 2**128 - 1]),
    ("setSequencerFeed", lambda s, c: [s.feeds["SOL"].address, 0]),
    ("transferOwnership", lambda s, c: [c]),
    ("renounceOwnership", lambda s, c: []),
]


@pytest.mark.parametrize(
    ("target", "setter", "make_args"),
    [("clearinghouse", n, f) for n, f in CLEARINGHOUSE_SETTERS]
    + [("router", n, f) for n, f in ROUTER_SETTERS],
    ids=[f"clearinghouse.{n}" for n, _ in CLEARINGHOUSE_SETTERS]
    + [f"router.{n}" for n, _ in ROUTER_SETTERS],
)
def test_privileged_setter__called_by_non_owner__reverts_ownable_unauthorized_account(
    system: Client,
    roles: Roles,
    trader: str,
    target: str,
    setter: str,
    make_args: Callable[..., list[Any]],
) -> None:
    """# A17: not a trader, nor the guardian, matcher or insurance fund: only the owner."""
    contract = system.ch if target == "clearinghouse" else system.router
    for caller in (trader, roles.guardian, roles.matcher, roles.insurance_fund):
        with pytest.raises(ContractRevert) as e:
            send(system, contract, setter, *make_args(system, caller), sender=caller)
        assert_revert(e.value, "OwnableUnauthorizedAccount", account=caller)
    assert contract.functions.owner().call() == roles.owner
    send(system, contract, setter, *make_args(system, trader), sender=roles.owner)  # the owner may


@pytest.mark.parametrize("role", ["trader", "matcher", "insurance_fund", "keeper"])
def test_pause__called_by_non_guardian__reverts_not_guardian(
    system: Client, roles: Roles, trader: str, keeper: str, role: str
) -> None:
    caller = {
        "trader": trader,
        "keeper": keeper,
        "matcher": roles.matcher,
        "insurance_fund": roles.insurance_fund,
    }[role]
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "pause", sender=caller)
    assert_revert(e.value, "NotGuardian", caller=caller)
    assert system.ch.functions.paused().call() is False


def test_unpause__called_by_guardian__reverts_ownable_unauthorized_account(
    system: Client, roles: Roles
) -> None:
    """B12: the guardian can stop risk-increasing trades but never restart them."""
    send(system, system.ch, "pause", sender=roles.guardian)
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "unpause", sender=roles.guardian)
    assert_revert(e.value, "OwnableUnauthorizedAccount", account=roles.guardian)
    assert system.ch.functions.paused().call() is True


def test_transfer_ownership__two_steps__new_owner_acts_only_after_accepting(
    system: Client, roles: Roles, trader: str, others: list[str]
) -> None:
    """# A17: Ownable2Step; a typo in the new owner's address cannot lose the contract."""
    new_owner, stranger = others[0], others[1]
    send(system, system.ch, "transferOwnership", new_owner, sender=roles.owner)
    assert system.ch.functions.pendingOwner().call() == new_owner
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "setMatcher", trader, True, sender=new_owner)
    assert_revert(e.value, "OwnableUnauthorizedAccount", account=new_owner)
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "acceptOwnership", sender=stranger)
    assert_revert(e.value, "OwnableUnauthorizedAccount", account=stranger)

    send(system, system.ch, "acceptOwnership", sender=new_owner)
    assert system.ch.functions.owner().call() == new_owner
    send(system, system.ch, "setMatcher", trader, True, sender=new_owner)
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "setMatcher", trader, False, sender=roles.owner)
    assert_revert(e.value, "OwnableUnauthorizedAccount", account=roles.owner)


# ---------------------------------------------------------------------------- collateral bounds
def test_list_collateral__valid__emits_listed_and_configured_and_stores_config(
    system: Client, roles: Roles
) -> None:
    token = new_token(system, roles.owner, decimals=18)
    receipt = send(
        system,
        system.ch,
        "listCollateral",
        token.address,
        SOL_ASSET,
        10_000,
        123 * WAD,
        sender=roles.owner,
    )
    assert events(system, receipt, "CollateralListed") == [
        {"assetId": 3, "token": token.address, "oracleAsset": SOL_ASSET, "decimals": 18}
    ]
    assert events(system, receipt, "CollateralConfigured") == [
        {"assetId": 3, "weightBps": 10_000, "depositCap": 123 * WAD}
    ]
    assert tuple(system.ch.functions.collateral(3).call()) == (
        token.address,
        SOL_ASSET,
        10_000,
        18,
        True,
        123 * WAD,
        0,
    )
    assert system.ch.functions.collateralCount().call() == 4


@pytest.mark.parametrize(("weight", "cap"), [(0, WAD), (10_001, WAD), (65_535, WAD), (8_000, 0)])
def test_list_collateral__weight_or_cap_out_of_bounds__reverts_invalid_collateral_config(
    system: Client, roles: Roles, weight: int, cap: int
) -> None:
    token = new_token(system, roles.owner)
    with pytest.raises(ContractRevert) as e:
        send(
            system,
            system.ch,
            "listCollateral",
            token.address,
            ETH_ASSET,
            weight,
            cap,
            sender=roles.owner,
        )
    assert_revert(e.value, "InvalidCollateralConfig", weightBps=weight, depositCap=cap)
    assert system.ch.functions.collateralCount().call() == 3


def test_list_collateral__zero_token__reverts_zero_address(system: Client, roles: Roles) -> None:
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "listCollateral", ZERO, ETH_ASSET, 8_000, WAD, sender=roles.owner)
    assert_revert(e.value, "ZeroAddress")
    assert e.value.args_by_name == {}


@pytest.mark.parametrize("decimals", [19, 255])
def test_list_collateral__token_with_more_than_18_decimals__reverts_unsupported_decimals(
    system: Client, roles: Roles, decimals: int
) -> None:
    token = new_token(system, roles.owner, decimals=decimals)
    with pytest.raises(ContractRevert) as e:
        send(
            system,
            system.ch,
            "listCollateral",
            token.address,
            ETH_ASSET,
            8_000,
            WAD,
            sender=roles.owner,
        )
    assert_revert(e.value, "UnsupportedDecimals", token=token.address, decimals=decimals)


def test_list_collateral__seventeenth__reverts_too_many_collaterals(
    system: Client, roles: Roles
) -> None:
    """Bounded by the 16-bit collateral mask (and the gas of the health loop, E07)."""
    missing = MAX_COLLATERALS - system.ch.functions.collateralCount().call()
    chain = system.chain
    factory = chain.w3.eth.contract(
        abi=chain.artifacts.abi("MockERC20"), bytecode=chain.artifacts.bytecode("MockERC20")
    )
    deployed = send_many(system, [factory.constructor("T", "T", 18)] * missing, roles.owner)
    list_calls = [
        system.ch.functions.listCollateral(r["contractAddress"], ETH_ASSET, 8_000, WAD)
        for r in deployed
    ]
    send_many(system, list_calls, roles.owner)
    assert system.ch.functions.collateralCount().call() == MAX_COLLATERALS
    token = new_token(system, roles.owner)
    with pytest.raises(ContractRevert) as e:
        send(
            system,
            system.ch,
            "listCollateral",
            token.address,
            ETH_ASSET,
            8_000,
            WAD,
            sender=roles.owner,
        )
    assert_revert(e.value, "TooManyCollaterals", count=MAX_COLLATERALS + 1, max=MAX_COLLATERALS)


def test_configure_collateral__valid__emits_and_stores(system: Client, roles: Roles) -> None:
    receipt = send(system, system.ch, "configureCollateral", 1, 7_000, 5 * WAD, sender=roles.owner)
    assert events(system, receipt, "CollateralConfigured") == [
        {"assetId": 1, "weightBps": 7_000, "depositCap": 5 * WAD}
    ]
    config = system.ch.functions.collateral(1).call()
    assert (config[2], config[5]) == (7_000, 5 * WAD)


@pytest.mark.parametrize(
    ("asset_id", "weight", "cap"),
    [
        (0, 9_999, WAD),
        (0, 10_001, WAD),
        (0, 10_000, 0),
        (1, 0, WAD),
        (1, 10_001, WAD),
        (2, 7_500, 0),
    ],
    ids=[
        "quote-haircut",
        "quote-over-100pct",
        "quote-zero-cap",
        "zero-weight",
        "over-100pct",
        "zero-cap",
    ],
)
def test_configure_collateral__out_of_bounds__reverts_invalid_collateral_config(
    system: Client, roles: Roles, asset_id: int, weight: int, cap: int
) -> None:
    """The quote token is the unit of account: always weight 10_000."""
    before = system.ch.functions.collateral(asset_id).call()
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "configureCollateral", asset_id, weight, cap, sender=roles.owner)
    assert_revert(e.value, "InvalidCollateralConfig", weightBps=weight, depositCap=cap)
    assert system.ch.functions.collateral(asset_id).call() == before


def test_configure_collateral__unlisted__reverts_unknown_collateral(
    system: Client, roles: Roles
) -> None:
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "configureCollateral", 3, 8_000, WAD, sender=roles.owner)
    assert_revert(e.value, "UnknownCollateral", assetId=3)


# ---------------------------------------------------------------------------- market bounds
BAD_MARKETS = [
    ("zero-penalty", (1_000, 650, 0, 200, WAD, WAD)),
    ("penalty-equal-mm", (1_000, 650, 650, 200, WAD, WAD)),
    ("penalty-above-mm", (1_000, 650, 700, 200, WAD, WAD)),
    ("mm-equal-im", (1_000, 1_000, 300, 200, WAD, WAD)),
    ("mm-above-im", (1_000, 1_200, 300, 200, WAD, WAD)),
    ("im-above-100pct", (10_001, 650, 300, 200, WAD, WAD)),
    ("zero-band", (1_000, 650, 300, 0, WAD, WAD)),
    ("band-equal-im", (1_000, 650, 300, 1_000, WAD, WAD)),
    ("zero-max-position", (1_000, 650, 300, 200, 0, WAD)),
    ("zero-oi-cap", (1_000, 650, 300, 200, WAD, 0)),
]


def test_list_market__valid__emits_listed_and_configured_and_stores_config(
    system: Client, roles: Roles
) -> None:
    params = (10_000, 9_999, 9_998, 9_999, 7 * WAD, 9 * WAD)  # every bound at its edge
    receipt = send(system, system.ch, "listMarket", SOL_ASSET, *params, sender=roles.owner)
    assert events(system, receipt, "MarketListed") == [{"marketId": 3, "oracleAsset": SOL_ASSET}]
    assert events(system, receipt, "MarketConfigured") == [
        {
            "marketId": 3,
            "imBps": 10_000,
            "mmBps": 9_999,
            "liquidationPenaltyBps": 9_998,
            "priceBandBps": 9_999,
            "maxPositionSize": 7 * WAD,
            "openInterestCap": 9 * WAD,
        }
    ]
    assert tuple(system.ch.functions.market(3).call()) == (
        SOL_ASSET,
        *params[:4],
        True,
        *params[4:],
        0,
    )
    assert system.ch.functions.marketCount().call() == 4


@pytest.mark.parametrize("params", [p for _, p in BAD_MARKETS], ids=[n for n, _ in BAD_MARKETS])
def test_list_market__out_of_bounds__reverts_invalid_market_config(
    system: Client, roles: Roles, params: tuple[int, ...]
) -> None:
    """Penalty < MM < IM ≤ 100% (I8) and band < IM (I6) are what make liquidations and reducing
    trades safe; zero caps would make the market unusable."""
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "listMarket", ETH_ASSET, *params, sender=roles.owner)
    im, mm, penalty, band = params[:4]
    assert_revert(
        e.value,
        "InvalidMarketConfig",
        imBps=im,
        mmBps=mm,
        liquidationPenaltyBps=penalty,
        priceBandBps=band,
    )
    assert system.ch.functions.marketCount().call() == 3


@pytest.mark.parametrize("params", [p for _, p in BAD_MARKETS], ids=[n for n, _ in BAD_MARKETS])
def test_configure_market__out_of_bounds__reverts_invalid_market_config(
    system: Client, roles: Roles, params: tuple[int, ...]
) -> None:
    before = system.ch.functions.market(0).call()
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "configureMarket", 0, *params, sender=roles.owner)
    im, mm, penalty, band = params[:4]
    assert_revert(
        e.value,
        "InvalidMarketConfig",
        imBps=im,
        mmBps=mm,
        liquidationPenaltyBps=penalty,
        priceBandBps=band,
    )
    assert system.ch.functions.market(0).call() == before


def test_configure_market__valid__emits_and_stores(system: Client, roles: Roles) -> None:
    params = (2_000, 1_000, 500, 100, 5 * WAD, 50 * WAD)
    receipt = send(system, system.ch, "configureMarket", 1, *params, sender=roles.owner)
    [event] = events(system, receipt, "MarketConfigured")
    assert tuple(event.values()) == (1, *params)
    assert tuple(system.ch.functions.market(1).call())[1:5] == params[:4]


def test_configure_market__new_rates__an_open_positions_requirements_follow_them(
    system: Client, roles: Roles, trader: str, maker: str
) -> None:
    """The health loop reads a packed copy of each market's asset and rates (`_marketRisk`): a
    reconfiguration must reach it, or old rates would keep governing margin."""
    fund(system, trader, "USDC", usdc(10_000))
    fund(system, maker, "USDC", usdc(1_000_000))
    system.trade("ETH-PERP", trader, maker, wad(2), 3_000 * WAD)
    send(system, system.ch, "configureMarket", 0, 2_000, 1_300, *ETH_PERP[2:], sender=roles.owner)
    _, im, mm = system.ch.functions.accountHealth(trader).call()
    # 2 ETH at 3,000: 6,000 of notional at the new 20% and 13%.
    assert (im, mm) == (1_200 * WAD, 780 * WAD)


def test_configure_market__unlisted__reverts_unknown_market(system: Client, roles: Roles) -> None:
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "configureMarket", 3, *ETH_PERP, sender=roles.owner)
    assert_revert(e.value, "UnknownMarket", marketId=3)


def test_list_market__thirty_third__reverts_too_many_markets(system: Client, roles: Roles) -> None:
    """Bounded by the 32-bit market mask (and the gas of the health loop, E07)."""
    missing = MAX_MARKETS - system.ch.functions.marketCount().call()
    send_many(system, [system.ch.functions.listMarket(ETH_ASSET, *ETH_PERP)] * missing, roles.owner)
    assert system.ch.functions.marketCount().call() == MAX_MARKETS
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "listMarket", ETH_ASSET, *ETH_PERP, sender=roles.owner)
    assert_revert(e.value, "TooManyMarkets", count=MAX_MARKETS + 1, max=MAX_MARKETS)


# ---------------------------------------------------------------------------- liquidation bounds
@pytest.mark.parametrize(
    "config",
    [
        (0, 5_000, 3_000, 8, 0, 0),
        (10_001, 5_000, 3_000, 8, 0, 0),
        (5_000, 10_001, 3_000, 8, 0, 0),
        (5_000, 5_000, 10_001, 8, 0, 0),
        (5_000, 5_000, 3_000, 0, 0, 0),
        (5_000, 5_000, 3_000, 33, 0, 0),
    ],
    ids=[
        "zero-close-factor",
        "close-factor-over-100pct",
        "full-health-over-100pct",
        "keeper-share-over-100pct",
        "zero-max-positions",
        "max-positions-over-market-mask",
    ],
)
def test_configure_liquidation__out_of_bounds__reverts_invalid_liquidation_config(
    system: Client, roles: Roles, config: tuple[int, ...]
) -> None:
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "configureLiquidation", config, sender=roles.owner)
    assert_revert(
        e.value,
        "InvalidLiquidationConfig",
        closeFactorBps=config[0],
        fullLiquidationHealthBps=config[1],
        keeperShareBps=config[2],
        maxPositionsPerAccount=config[3],
    )
    assert tuple(system.ch.functions.liquidationConfig().call()) == DEFAULT_LIQUIDATION


def test_configure_liquidation__valid__emits_every_field_and_stores_it(
    system: Client, roles: Roles
) -> None:
    config = (10_000, 0, 10_000, 32, 7 * WAD, 2**96 - 1)  # every bound at its edge
    receipt = send(system, system.ch, "configureLiquidation", config, sender=roles.owner)
    assert events(system, receipt, "LiquidationConfigured") == [
        {
            "closeFactorBps": 10_000,
            "fullLiquidationHealthBps": 0,
            "keeperShareBps": 10_000,
            "maxPositionsPerAccount": 32,
            "minPositionNotionalWad": 7 * WAD,
            "keeperRewardCapWad": 2**96 - 1,
        }
    ]
    assert tuple(system.ch.functions.liquidationConfig().call()) == config


# ---------------------------------------------------------------------------- roles
def test_set_matcher__zero_address__reverts_zero_address(system: Client, roles: Roles) -> None:
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "setMatcher", ZERO, True, sender=roles.owner)
    assert_revert(e.value, "ZeroAddress")
    assert e.value.args_by_name == {}


def test_set_matcher__revoked__emits_and_its_trades_revert_not_matcher(
    system: Client, roles: Roles, trader: str, maker: str
) -> None:
    system.deposit(trader, "USDC", 10_000, mint=True)
    system.deposit(maker, "USDC", 10_000, mint=True)
    receipt = send(system, system.ch, "setMatcher", roles.matcher, False, sender=roles.owner)
    assert events(system, receipt, "MatcherSet") == [{"matcher": roles.matcher, "allowed": False}]
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", trader, maker, wad(1), 3_000 * WAD)
    assert_revert(e.value, "NotMatcher", caller=roles.matcher)

    receipt = send(system, system.ch, "setMatcher", trader, True, sender=roles.owner)
    assert events(system, receipt, "MatcherSet") == [{"matcher": trader, "allowed": True}]
    assert system.ch.functions.isMatcher(trader).call() is True


def test_set_guardian__replaced__emits_and_only_the_new_guardian_can_pause(
    system: Client, roles: Roles, keeper: str
) -> None:
    receipt = send(system, system.ch, "setGuardian", keeper, sender=roles.owner)
    assert events(system, receipt, "GuardianSet") == [{"guardian": keeper}]
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "pause", sender=roles.guardian)
    assert_revert(e.value, "NotGuardian", caller=roles.guardian)
    receipt = send(system, system.ch, "pause", sender=keeper)
    assert events(system, receipt, "PauseSet") == [{"paused": True}]


# ---------------------------------------------------------------------------- B12 pause
def test_pause__blocks_risk_increasing_trades_only__exits_and_liquidations_keep_working(
    system: Client, roles: Roles, open_position: Callable[..., Any], keeper: str, others: list[str]
) -> None:
    """# B12 / I13: a compromised engine key is met with a pause; the guardian's pause stops new
    risk, while deposits, reducing trades, withdrawals and liquidations go on; only the owner
    unpauses."""
    opened = open_position(size=10, collateral_usd=5_000)
    trader, maker, newcomer = opened.trader, opened.maker, others[0]
    receipt = send(system, system.ch, "pause", sender=roles.guardian)
    assert events(system, receipt, "PauseSet") == [{"paused": True}]
    assert system.ch.functions.paused().call() is True

    assert system.deposit(newcomer, "USDC", 50_000, mint=True) == 50_000 * 10**6
    for taker, counterparty, delta in (
        (trader, maker, wad(1)),  # both add to their positions
        (newcomer, maker, wad(1)),  # the newcomer opens, the maker reduces
        (trader, newcomer, -wad(1)),  # the trader reduces, the newcomer opens a short
    ):
        with pytest.raises(ContractRevert) as e:
            system.trade("ETH-PERP", taker, counterparty, delta, 3_000 * WAD)
        assert_revert(e.value, "Paused")
        assert e.value.args_by_name == {}

    system.trade("ETH-PERP", trader, maker, -wad(2), 3_000 * WAD)  # both reduce
    assert system.position(trader, "ETH-PERP") == wad(8)
    system.withdraw(maker, "USDC", 1_000_000)  # a withdrawal from an account with a position
    system.set_price("ETH", 2_500)  # trader: equity −19000 + 8 × 2500 = 1000 < MM 1300
    receipt = system.liquidate(keeper, trader, "ETH-PERP")
    assert events(system, receipt, "Liquidate")[0]["sizeDelta"] == -wad(4)

    receipt = send(system, system.ch, "unpause", sender=roles.owner)
    assert events(system, receipt, "PauseSet") == [{"paused": False}]
    system.trade("ETH-PERP", newcomer, maker, wad(1), 2_500 * WAD)
    assert system.position(newcomer, "ETH-PERP") == wad(1)


# ---------------------------------------------------------------------------- A18 blocklist
@pytest.fixture
def blocklisted(
    system: Client, roles: Roles, trader: str, maker: str, others: list[str]
) -> dict[str, Any]:
    """BLK (6 decimals, priced as SOL at $150, weight 80%) backs two 10 ETH longs: 40 BLK each
    gives equity 4800 against IM 3000. Then the trader is blocklisted by the token."""
    token = system.chain.deploy("BlocklistToken", sender=roles.owner)
    receipt = send(
        system,
        system.ch,
        "listCollateral",
        token.address,
        SOL_ASSET,
        8_000,
        10**18,
        sender=roles.owner,
    )
    [asset_id] = [e["assetId"] for e in events(system, receipt, "CollateralListed")]
    system.deposit(maker, "USDC", 10_000_000, mint=True)
    for account in (trader, others[0]):
        system.chain.send(token.functions.mint(account, 40 * 10**6), account, "mint")
        system.chain.send(
            token.functions.approve(system.ch.address, 40 * 10**6), account, "approve"
        )
        system.chain.send(
            system.ch.functions.deposit(account, asset_id, 40 * 10**6), account, "deposit"
        )
        system.trade("ETH-PERP", account, maker, wad(10), 3_000 * WAD)
    system.chain.send(token.functions.setBlocked(trader, True), roles.owner, "blocklist trader")
    return {"token": token, "asset_id": asset_id, "blocked": trader, "other": others[0]}


def _token_transfers(receipt: Any, token: Contract) -> list[Any]:
    return [log for log in receipt["logs"] if log["address"].lower() == token.address.lower()]


def test_blocklisted_account__its_own_withdrawal_fails_but_liquidations_of_it_and_others_work(
    system: Client, roles: Roles, blocklisted: dict[str, Any], keeper: str
) -> None:
    """# A18: the blocklist bites on token transfers (its withdrawal), yet liquidations move no
    tokens, so neither the blocked account nor anyone else escapes or blocks them."""
    token, asset_id, blocked, other = (
        blocklisted[k] for k in ("token", "asset_id", "blocked", "other")
    )
    with pytest.raises(ContractRevert) as e:
        system.chain.send(
            system.ch.functions.withdraw(asset_id, 10**6, blocked), blocked, "withdraw"
        )
    assert_revert(e.value, "Blocked", account=blocked)

    system.set_price("ETH", 2_650)  # equity 4800 − 3500 = 1300 < MM 1722.5 for both
    for account in (other, blocked):
        receipt = system.liquidate(keeper, account, "ETH-PERP")
        [event] = events(system, receipt, "Liquidate")
        assert (event["account"], event["sizeAfter"]) == (account, wad(5))
        assert _token_transfers(receipt, token) == []
    assert token.functions.balanceOf(system.ch.address).call() == 80 * 10**6


def test_blocklisted_account__insolvent__collateral_seized_internally_without_a_transfer(
    system: Client, roles: Roles, blocklisted: dict[str, Any], keeper: str
) -> None:
    """# A18 / I11: bad debt is resolved in the same liquidation; the blocked account's BLK moves
    to the insurance fund on the books, so the token's blocklist cannot stop it."""
    token, asset_id, blocked = blocklisted["token"], blocklisted["asset_id"], blocklisted["blocked"]
    system.set_price("ETH", 2_000)  # equity 4800 − 10000 < 0: full liquidation, then insolvency
    receipt = system.liquidate(keeper, blocked, "ETH-PERP")
    assert events(system, receipt, "Liquidate")[0]["sizeAfter"] == 0
    [seized] = events(system, receipt, "CollateralSeized")
    assert (seized["account"], seized["assetId"], seized["amount"]) == (
        blocked,
        asset_id,
        40 * 10**6,
    )
    assert len(events(system, receipt, "InsolvencyResolved")) == 1
    assert _token_transfers(receipt, token) == []
    assert system.ch.functions.collateralBalance(blocked, asset_id).call() == 0
    assert (
        system.ch.functions.collateralBalance(roles.insurance_fund, asset_id).call() == 40 * 10**6
    )
    assert token.functions.balanceOf(system.ch.address).call() == 80 * 10**6


def test_list_collateral__token_already_listed__reverts_collateral_already_listed(
    system: Client, roles: Roles
) -> None:
    """Two listings of one token would share its balance and blind the shortfall check (I3)."""
    weth = system.tokens["WETH"].address
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, "listCollateral", weth, ETH_ASSET, 8_000, WAD, sender=roles.owner)
    assert_revert(e.value, "CollateralAlreadyListed", token=weth)


@pytest.mark.parametrize("setter", ["listCollateral", "listMarket"])
def test_listing__oracle_asset_without_feed__reverts_oracle_asset_not_listed(
    system: Client, roles: Roles, setter: str
) -> None:
    unpriced = 7  # the router has feeds for assets 0-2 only
    args = (
        [new_token(system, roles.owner).address, unpriced, 8_000, WAD]
        if setter == "listCollateral"
        else [unpriced, *ETH_PERP]
    )
    with pytest.raises(ContractRevert) as e:
        send(system, system.ch, setter, *args, sender=roles.owner)
    assert_revert(e.value, "OracleAssetNotListed", oracleAsset=unpriced)
