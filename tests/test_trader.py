"""What a trader and an operator do through `offchain.ops`: the development venue, the account
view (margin in force and where it comes from, liquidation prices), the population, the choice
of engine signers and the up-front funds check."""

from __future__ import annotations

import pytest
from eth_account import Account
from helpers import _batch, _entry, _submit, assert_revert, fund, usdc

from offchain.chain.client import Client
from offchain.errors import ConfigError, ContractRevert
from offchain.models import SystemSpec
from offchain.ops.funds import require_funds
from offchain.ops.signers import engine_signer_addresses, with_signers
from offchain.ops.venue import DEV_MAKER, populate, trade, trader_address
from offchain.ops.views import account_view, status_view
from offchain.sync.keys import ENV_KEYS

KEY_1, KEY_2 = "0x" + "a1" * 32, "0x" + "b2" * 32


def test_trade__fills_against_the_dev_maker_at_the_oracle_price(
    system: Client, trader: str
) -> None:
    fund(system, trader, "USDC", usdc(10_000))
    price = trade(system, trader, "ETH-PERP", "2")
    assert price == system.price_e18("ETH")
    assert system.position(trader, "ETH-PERP") == 2 * 10**18
    assert system.position(DEV_MAKER, "ETH-PERP") == -2 * 10**18
    assert not system.health(DEV_MAKER).liquidatable  # the deployer funded the maker first


def test_trade__beyond_the_margin__refused_with_the_contracts_error(
    system: Client, trader: str
) -> None:
    fund(system, trader, "USDC", usdc(1_000))
    with pytest.raises(ContractRevert) as e:
        trade(system, trader, "ETH-PERP", "5")  # $15,000 at IM 10% needs $1,500
    assert_revert(e.value, "InsufficientMargin", account=trader)


def test_trade__unknown_market__names_the_markets(system: Client, trader: str) -> None:
    with pytest.raises(ConfigError, match="use one of: ETH-PERP, BTC-PERP, SOL-PERP"):
        trade(system, trader, "DOGE-PERP", "1")


def test_account_view__static_margin_and_a_liquidation_price_that_is_exact(
    system: Client, trader: str
) -> None:
    fund(system, trader, "USDC", usdc(10_000))
    trade(system, trader, "ETH-PERP", "10")
    v = account_view(system, trader)
    h = system.health(trader)
    assert not v.attested
    assert (v.equity_usd, v.mm_usd) == (h.equity_wad / 1e18, h.maintenance_margin_wad / 1e18)
    assert (v.im_usd, v.mm_usd) == (v.static_im_usd, v.static_mm_usd)
    [p] = v.positions
    assert (p.market, p.size, p.notional_usd) == ("ETH-PERP", 10.0, 30_000.0)
    liq = p.liquidation_price_usd
    assert liq is not None
    system.set_price("ETH", f"{liq * 1.0001:.8f}")
    assert not system.health(trader).liquidatable
    system.set_price("ETH", f"{liq * 0.9999:.8f}")
    assert system.health(trader).liquidatable


def test_account_view__an_attestation_in_force__is_shown_as_attested(
    system: Client, trader: str
) -> None:
    fund(system, trader, "USDC", usdc(10_000))
    trade(system, trader, "ETH-PERP", "10")
    _submit(system, _batch(system, [_entry(system, trader, 4_000, 2_500)]))  # static: 3,000 / 1,950
    v = account_view(system, trader)
    assert v.attested
    assert (v.im_usd, v.mm_usd) == (4_000.0, 2_500.0)
    assert (v.static_im_usd, v.static_mm_usd) == (3_000.0, 1_950.0)


def test_populate__opens_the_seeded_population_once_per_seed(system: Client) -> None:
    done = populate(system, seed=3, count=5)
    assert done.traders == [trader_address(3, i) for i in range(5)]
    assert done.positions >= 5
    assert all(system.account(t)["market_mask"] for t in done.traders)
    status = status_view(system)
    assert status.with_positions == 6  # five traders and the dev maker
    assert status.below_mm == []
    with pytest.raises(ConfigError, match="pick another --seed"):
        populate(system, seed=3, count=5)


def test_engine_signers__development_keys_only_on_local_chain_ids() -> None:
    assert engine_signer_addresses(31337, [], env={}) is None
    with pytest.raises(ConfigError, match="chain 11155111 is not a local chain"):
        engine_signer_addresses(11155111, [], env={})


def test_engine_signers__from_flags_or_from_the_engines_own_keys() -> None:
    a1, a2 = Account.from_key(KEY_1).address, Account.from_key(KEY_2).address
    assert engine_signer_addresses(11155111, [a1.lower(), a2], env={}) == [a1, a2]
    assert engine_signer_addresses(11155111, [], env={ENV_KEYS: f"{KEY_1},{KEY_2}"}) == [a1, a2]
    with pytest.raises(ConfigError, match="is not an address"):
        engine_signer_addresses(11155111, ["0x1234"], env={})


def test_with_signers__threshold_above_the_signers__is_refused() -> None:
    spec = with_signers(SystemSpec(), 2, None)
    assert spec.attestation is not None
    assert (spec.attestation.signers, spec.attestation.threshold) == (2, 2)
    with pytest.raises(ConfigError, match="--threshold 3 exceeds the 2 engine signer"):
        with_signers(SystemSpec(), 2, 3)


def test_require_funds__an_empty_address__named_with_the_fix(system: Client) -> None:
    empty = Account.from_key(KEY_1).address
    with pytest.raises(ConfigError, match=f"send ETH to {empty}"):
        require_funds(system.chain, empty, "keeper", 1_000_000, "MARGINSYNC_PRIVATE_KEY")
    require_funds(system.chain, system.d.owner, "deployer", 1_000_000, "MARGINSYNC_PRIVATE_KEY")
