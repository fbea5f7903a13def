"""The synchronisation rules S1-S3, the B12 clamp and the S7 events, on the real contracts on Anvil.

S1: each validity clause on its own (quorum, distinct ascending signers, registered keys, sequence,
issue time, max age, position nonce, price band, priced assets). S2: with the engine silent the
static requirement applies and liquidation and withdrawal keep working. S3: an attestation bundled
with a withdrawal or a trade is applied and checked in the same transaction.

Default system: ETH 3000, IM 10 %, MM 6.5 %; verifier 2-of-3, maxAge 300 s, band 100 bps, floor
50 %, cap 500 % of static. 10 ETH long with 5000 USDC: equity 5000, static IM 3000, MM 1950.
"""

from __future__ import annotations

import pytest
from helpers import (
    KEYS,
    _applied,
    _attested,
    _batch,
    _domain,
    _entry,
    _events,
    _micro,
    _now,
    _requirement,
    _revert,
    _sign,
    _submit,
    _submit_reverts,
    _verifier,
)

from offchain.attest import address_of, applied_entries, digest
from offchain.chain.client import Client, wad

SIGNERS = [address_of(bytes.fromhex(k[2:])) for k in KEYS]
OUTSIDER_KEY = "0x" + "11" * 32  # a well-formed key that is not registered


# ---------------------------------------------------------------------------- helpers


def _mine_at(system: Client, timestamp: int) -> None:
    system.chain.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])  # type: ignore[arg-type]
    system.chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def _advance(system: Client, seconds: int) -> None:
    system.chain.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    system.chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def _names(system: Client, receipt) -> list[str]:
    return [e.name for e in system.events(receipt)]


STATIC_10_ETH = (wad(3_000), wad(1_950))  # IM, MM of 10 ETH at 3000


# ---------------------------------------------------------------------------- S1: quorum
def test_one_signature_below_the_threshold_of_two_reverts_signature_count_mismatch(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    err = _submit_reverts(system, batch, _sign(system, batch, KEYS[:1]))
    assert err.name == "SignatureCountMismatch"
    assert err.args_by_name == {"signatureBytes": 65, "threshold": 2}
    assert _applied(system, trader) == (0, 0, 0, 0)
    assert _requirement(system, trader) == STATIC_10_ETH


def test_three_signatures_for_a_threshold_of_two_revert_signature_count_mismatch(
    system: Client, trader: str
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    err = _submit_reverts(system, batch, _sign(system, batch, KEYS))
    assert err.name == "SignatureCountMismatch"
    assert err.args_by_name == {"signatureBytes": 195, "threshold": 2}


def test_the_same_key_signing_twice_reverts_signers_not_ascending(
    system: Client, trader: str
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    err = _submit_reverts(system, batch, _sign(system, batch, [KEYS[0], KEYS[0]]))
    assert err.name == "SignersNotAscending"
    assert err.args_by_name == {"index": 1, "signer": SIGNERS[0]}
    assert _applied(system, trader) == (0, 0, 0, 0)


def test_two_distinct_keys_in_descending_address_order_revert_signers_not_ascending(
    system: Client, trader: str
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    sigs = _sign(system, batch, KEYS[:2])
    swapped = sigs[65:] + sigs[:65]
    low, high = sorted(SIGNERS[:2], key=str.lower)
    err = _submit_reverts(system, batch, swapped)
    assert err.name == "SignersNotAscending"
    assert err.args_by_name == {"index": 1, "signer": low}
    assert high != low


def test_a_signature_by_an_unregistered_key_reverts_unknown_signer(
    system: Client, trader: str
) -> None:
    outsider = address_of(bytes.fromhex(OUTSIDER_KEY[2:]))
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    err = _submit_reverts(system, batch, _sign(system, batch, [KEYS[0], OUTSIDER_KEY]))
    assert err.name == "UnknownSigner"
    assert err.args_by_name == {"signer": outsider}
    assert _applied(system, trader) == (0, 0, 0, 0)


# ---------------------------------------------------------------------------- S1: sequence
def test_a_stale_sequence_for_an_account_is_skipped_with_an_event_and_the_newer_entry_stays(
    system: Client, open_position, trader: str, others: list[str]
) -> None:
    open_position(size=10)
    nonce = system.account(trader)["nonce"]
    _submit(system, _batch(system, [_entry(system, trader, 2_000, 1_500)], sequence=5))
    assert _applied(system, trader) == (5, nonce, _micro(2_000), _micro(1_500))

    older = _batch(
        system, [_entry(system, trader, 2_500, 1_800), _entry(system, others[0], 10, 5)], 3
    )
    receipt = _submit(system, older)
    events = system.events(receipt)
    skipped = [e for e in events if e.name == "AttestationSkipped"]
    assert [e.args for e in skipped] == [{"account": trader, "sequence": 3, "appliedSequence": 5}]
    applied = next(e for e in events if e.name == "BatchApplied")
    assert (applied.args["applied"], applied.args["skipped"]) == (1, 1)
    assert _applied(system, trader) == (5, nonce, _micro(2_000), _micro(1_500))
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))
    assert _applied(system, others[0])[0] == 3


# ---------------------------------------------------------------------------- S1: time
def test_a_batch_issued_in_the_future_reverts_attestation_from_future(
    system: Client, trader: str
) -> None:
    issued = _now(system) + 120
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)], issued_at=issued)
    err = _submit_reverts(system, batch)
    assert err.name == "AttestationFromFuture"
    assert err.args_by_name["issuedAt"] == issued
    assert issued - 120 <= err.args_by_name["blockTimestamp"] < issued
    assert _applied(system, trader) == (0, 0, 0, 0)


def test_a_batch_older_than_max_age_at_submission_reverts_attestation_expired(
    system: Client, trader: str
) -> None:
    issued = _now(system) - 301
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)], issued_at=issued)
    err = _submit_reverts(system, batch)
    assert err.name == "AttestationExpired"
    assert err.args_by_name == {"issuedAt": issued, "maxAgeSeconds": 300}
    assert _applied(system, trader) == (0, 0, 0, 0)


def test_an_applied_attestation_is_in_force_up_to_max_age_and_static_one_second_later(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)
    issued = _now(system)
    _submit(system, _batch(system, [_entry(system, trader, 2_000, 1_500)], issued_at=issued))
    _mine_at(system, issued + 300)
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))
    _mine_at(system, issued + 301)
    assert _requirement(system, trader) == STATIC_10_ETH
    # the entry is still stored; only its age took it out of force
    assert _applied(system, trader)[0] == 1


# ---------------------------------------------------------------------------- S1: nonce
def test_an_entry_bound_to_another_position_nonce_is_applied_but_never_in_force(
    system: Client, open_position, trader: str
) -> None:
    opened = open_position(size=10)
    nonce = system.account(trader)["nonce"]
    assert nonce == 1
    _submit(system, _batch(system, [_entry(system, trader, 2_000, 1_500, nonce=0)], 1))
    assert _applied(system, trader) == (1, 0, _micro(2_000), _micro(1_500))
    assert _requirement(system, trader) == STATIC_10_ETH

    _submit(system, _batch(system, [_entry(system, trader, 2_000, 1_500)], 2))
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))
    # any position change bumps the nonce and voids the attestation (S1) -> static (S2)
    system.trade("ETH-PERP", trader, opened.maker, wad(1), opened.price_e18)
    assert system.account(trader)["nonce"] == 2
    assert _requirement(system, trader) == (wad(3_300), wad(2_145))


# ---------------------------------------------------------------------------- S1: price band (B11)
@pytest.mark.parametrize(
    ("attested_e18", "in_force"),
    [
        (3_000 * 10**18 * 13 // 10, False),  # B11: 1.3x the oracle
        (3_030 * 10**18, True),  # exactly +100 bps
        (3_030 * 10**18 + 1, False),  # one wei beyond the band
        (2_970 * 10**18, True),  # exactly -100 bps
        (2_970 * 10**18 - 1, False),
        (3_010 * 10**18, True),  # well inside
    ],
    ids=["1.3x", "+100bps", "+100bps+1wei", "-100bps", "-100bps-1wei", "+33bps"],
)
def test_an_attestation_is_in_force_only_while_its_prices_lie_within_the_band_of_the_oracle(
    system: Client, open_position, trader: str, attested_e18: int, in_force: bool
) -> None:
    open_position(size=10)
    assert system.price_e18("ETH") == 3_000 * 10**18
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)], prices=(attested_e18,))
    _submit(system, batch)
    assert _applied(system, trader)[0] == 1
    expected = (wad(2_000), wad(1_500)) if in_force else STATIC_10_ETH
    assert _requirement(system, trader) == expected


def test_an_oracle_move_after_applying_takes_the_attestation_out_of_force_and_back(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)
    _submit(system, _batch(system, [_entry(system, trader, 2_000, 1_500)]))
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))
    system.set_price("ETH", 3_031)  # 103.3 bps above the attested 3000
    # static at the new price: 10 * 3031 * 10 % and 6.5 %
    assert _requirement(system, trader) == (wad(3_031), wad("1970.15"))
    system.set_price("ETH", 3_029)  # back inside the band: the same entry applies again
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))


def test_a_batch_that_does_not_price_every_traded_asset_is_not_in_force(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)  # ETH long: IM 3000, MM 1950
    open_position(size="-0.5", market="BTC-PERP", collateral_usd=2_000)  # BTC short: same
    static = (wad(6_000), wad(3_900))
    assert _requirement(system, trader) == static
    _submit(system, _batch(system, [_entry(system, trader, 4_000, 3_000)], 1, assets=("ETH",)))
    assert _requirement(system, trader) == static
    _submit(
        system, _batch(system, [_entry(system, trader, 4_000, 3_000)], 2, assets=("ETH", "BTC"))
    )
    assert _requirement(system, trader) == (wad(4_000), wad(3_000))


def test_a_batch_in_a_reused_ring_slot_is_not_credited_with_the_previous_batchs_prices(
    system: Client, open_position, trader: str, others: list[str]
) -> None:
    """Records live in a ring of 4096 slots; sequence 4097 reuses the slot of sequence 1, whose
    BTC price stays in storage. Only the mask says which prices belong to the new batch."""
    open_position(size=10)
    open_position(size="-0.5", market="BTC-PERP", collateral_usd=2_000)
    static = (wad(6_000), wad(3_900))
    _submit(system, _batch(system, [_entry(system, others[0], 10, 5)], 1, assets=("ETH", "BTC")))
    _submit(system, _batch(system, [_entry(system, trader, 4_000, 3_000)], 4_097, assets=("ETH",)))
    assert _applied(system, trader)[0] == 4_097
    assert _requirement(system, trader) == static
    _submit(
        system,
        _batch(system, [_entry(system, trader, 4_000, 3_000)], 8_193, assets=("ETH", "BTC")),
    )
    assert _requirement(system, trader) == (wad(4_000), wad(3_000))


def test_an_older_batch_sharing_a_ring_slot__never_evicts_the_newer_record(
    system: Client, open_position, trader: str, others: list[str]
) -> None:
    """Sequence 5 shares its ring slot with 4101. Submitted after 4101, it must not take the
    trader's newer attestation out of force; its own entry is simply not in force."""
    open_position(size=10)
    _submit(system, _batch(system, [_entry(system, trader, 2_000, 1_600)], 4_101))
    assert _requirement(system, trader) == (wad(2_000), wad(1_600))
    _submit(system, _batch(system, [_entry(system, others[0], 10, 5)], 5))
    assert _requirement(system, trader) == (wad(2_000), wad(1_600))
    assert _applied(system, others[0])[0] == 5  # applied, but its record lost to 4101


# ---------------------------------------------------------------------------- S2: outage
def test_after_an_engine_outage_a_withdrawal_is_checked_against_static_margin(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)  # equity 5000, static IM 3000
    _submit(system, _batch(system, [_entry(system, trader, 4_500, 2_500)]))
    err = _revert(system, system.fn("withdraw", 0, 1_000 * 10**6, trader), trader)
    assert err.name == "InsufficientMargin"
    assert err.args_by_name == {
        "account": trader,
        "equityWad": wad(4_000),
        "initialMarginWad": wad(4_500),
    }
    _advance(system, 301)  # the engine posts nothing: the attestation ages out
    assert _requirement(system, trader) == STATIC_10_ETH
    system.withdraw(trader, "USDC", 1_000)
    assert system.health(trader).equity_wad == wad(4_000)


def test_after_an_engine_outage_a_keeper_liquidates_against_static_maintenance_margin(
    system: Client, open_position, trader: str, keeper: str
) -> None:
    open_position(size=10)
    system.set_price("ETH", 2_650)  # equity 1500 < static MM 1722.5
    _submit(system, _batch(system, [_entry(system, trader, 1_400, 1_000)]))
    assert _requirement(system, trader) == (wad(1_400), wad(1_000))
    err = _revert(system, system.fn("liquidate", trader, 0, 2**256 - 1), keeper)
    assert err.name == "AccountHealthy"
    assert err.args_by_name == {
        "account": trader,
        "equityWad": wad(1_500),
        "maintenanceMarginWad": wad(1_000),
    }
    _advance(system, 301)
    assert _requirement(system, trader) == (wad(2_650), wad("1722.5"))
    receipt = system.liquidate(keeper, trader, "ETH-PERP")
    assert "Liquidate" in _names(system, receipt)
    assert abs(system.position(trader, "ETH-PERP")) < wad(10)


# ---------------------------------------------------------------------------- S3: bundling
def test_withdraw_with_attestation_lets_a_hedged_account_withdraw_what_static_margin_refuses(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)  # long 10 ETH  (30 000 notional)
    open_position(size="-0.5", market="BTC-PERP", collateral_usd=2_000)  # short 0.5 BTC (30 000)
    assert system.health(trader).equity_wad == wad(7_000)
    err = _revert(system, system.fn("withdraw", 0, 2_000 * 10**6, trader), trader)
    assert err.name == "InsufficientMargin"
    assert err.args_by_name == {
        "account": trader,
        "equityWad": wad(5_000),
        "initialMarginWad": wad(6_000),
    }

    batch = _batch(system, [_entry(system, trader, 3_500, 2_500)], assets=("ETH", "BTC"))
    receipt = system.chain.send(
        system.fn(
            "withdrawWithAttestation",
            0,
            2_000 * 10**6,
            trader,
            batch.as_tuple(),
            _sign(system, batch),
        ),
        trader,
        "withdraw with attestation",
    )
    # verified, applied and checked in one transaction (S3)
    assert _names(system, receipt) == ["BatchApplied", "Transfer", "Withdraw"]
    h = system.health(trader)
    assert (h.equity_wad, h.initial_margin_wad, h.maintenance_margin_wad) == (
        wad(5_000),
        wad(3_500),
        wad(2_500),
    )


def test_withdraw_with_a_higher_attested_margin_reverts_what_static_margin_allows(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)
    batch = _batch(system, [_entry(system, trader, 4_000, 2_500)])
    err = _revert(
        system,
        system.fn(
            "withdrawWithAttestation",
            0,
            1_500 * 10**6,
            trader,
            batch.as_tuple(),
            _sign(system, batch),
        ),
        trader,
    )
    assert err.name == "InsufficientMargin"
    assert err.args_by_name == {
        "account": trader,
        "equityWad": wad(3_500),
        "initialMarginWad": wad(4_000),
    }
    assert _applied(system, trader) == (0, 0, 0, 0)  # the whole transaction reverted
    system.withdraw(trader, "USDC", 1_500)  # static IM 3000 <= 3500: allowed without it


def test_settle_trade_with_attestation_bound_to_post_trade_nonces_passes_on_attested_margin(
    system: Client, open_position, trader: str, maker: str
) -> None:
    opened = open_position(size=10)  # equity 5000; 20 ETH would need static IM 6000
    err = _revert(
        system,
        system.fn("settleTrade", 0, trader, maker, wad(10), opened.price_e18),
        system.d.matcher,
    )
    assert err.name == "InsufficientMargin"
    assert err.args_by_name == {
        "account": trader,
        "equityWad": wad(5_000),
        "initialMarginWad": wad(6_000),
    }

    t_nonce, m_nonce = system.account(trader)["nonce"], system.account(maker)["nonce"]
    batch = _batch(
        system,
        [
            _entry(system, trader, 4_000, 2_800, nonce=t_nonce + 1),
            _entry(system, maker, 5_000, 3_500, nonce=m_nonce + 1),
        ],
    )
    receipt = system.chain.send(
        system.fn(
            "settleTradeWithAttestation",
            0,
            trader,
            maker,
            wad(10),
            opened.price_e18,
            batch.as_tuple(),
            _sign(system, batch),
        ),
        system.d.matcher,
        "settle with attestation",
    )
    # The attestations come first (S3); the trade's funding events (IFunding) are not the point.
    assert [n for n in _names(system, receipt) if not n.startswith(("Funding", "Premium"))] == [
        "BatchApplied",
        "TradeSettled",
    ]
    assert [a["account"] for a in _attested(system, receipt)] == [trader, maker]
    assert system.position(trader, "ETH-PERP") == wad(20)
    assert system.account(trader)["nonce"] == t_nonce + 1
    assert _requirement(system, trader) == (wad(4_000), wad(2_800))
    assert _requirement(system, maker) == (wad(5_000), wad(3_500))


def test_settle_trade_with_entries_bound_to_pre_trade_nonces_is_voided_by_the_trade_itself(
    system: Client, open_position, trader: str, maker: str
) -> None:
    opened = open_position(size=10)
    batch = _batch(
        system, [_entry(system, trader, 4_000, 2_800), _entry(system, maker, 5_000, 3_500)]
    )
    err = _revert(
        system,
        system.fn(
            "settleTradeWithAttestation",
            0,
            trader,
            maker,
            wad(10),
            opened.price_e18,
            batch.as_tuple(),
            _sign(system, batch),
        ),
        system.d.matcher,
    )
    assert err.name == "InsufficientMargin"
    assert err.args_by_name == {
        "account": trader,
        "equityWad": wad(5_000),
        "initialMarginWad": wad(6_000),
    }


def test_settle_trade_with_attestation_from_a_non_matcher_reverts_not_matcher(
    system: Client, open_position, trader: str, maker: str
) -> None:
    opened = open_position(size=10)
    batch = _batch(
        system,
        [
            _entry(system, trader, 4_000, 2_800, nonce=system.account(trader)["nonce"] + 1),
            _entry(system, maker, 5_000, 3_500, nonce=system.account(maker)["nonce"] + 1),
        ],
    )
    err = _revert(
        system,
        system.fn(
            "settleTradeWithAttestation",
            0,
            trader,
            maker,
            wad(1),
            opened.price_e18,
            batch.as_tuple(),
            _sign(system, batch),
        ),
        trader,
    )
    assert err.name == "NotMatcher"
    assert err.args_by_name == {"caller": trader}
    assert _applied(system, trader) == (0, 0, 0, 0)
    assert system.position(trader, "ETH-PERP") == wad(10)


def test_a_bundled_attestation_front_run_by_a_direct_submission_still_lets_the_user_withdraw(
    system: Client, open_position, trader: str, others: list[str]
) -> None:
    open_position(size=10)
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    sigs = _sign(system, batch)
    _submit(system, batch, sigs, sender=others[0])  # an observer lifts it from the mempool
    # the batch itself is spent (B01) ...
    err = _revert(
        system,
        system.fn("withdrawWithAttestation", 0, 2_500 * 10**6, trader, batch.as_tuple(), sigs),
        trader,
    )
    assert err.name == "NothingApplied"
    assert err.args_by_name == {"sequence": 1}
    # ... but it is in force, so the plain withdrawal goes through on the attested IM
    system.withdraw(trader, "USDC", 2_500)
    assert system.health(trader).equity_wad == wad(2_500)


# ------------------------------------------------------------------------- B12 compromised quorum
def test_a_compromised_quorum_demanding_a_million_times_static_margin_is_capped_at_five_times(
    system: Client, open_position, trader: str, keeper: str
) -> None:
    open_position(size=1, collateral_usd=10_000)  # static IM 300, MM 195; equity 10 000
    _submit(system, _batch(system, [_entry(system, trader, 300 * 10**6, 195 * 10**6)]))
    assert _applied(system, trader)[3] == _micro(195 * 10**6)
    assert _requirement(system, trader) == (wad(1_500), wad(975))
    # A09 / I7: still healthy (10 000 >= 975), so nobody can liquidate it
    err = _revert(system, system.fn("liquidate", trader, 0, 2**256 - 1), keeper)
    assert err.name == "AccountHealthy"
    assert err.args_by_name == {
        "account": trader,
        "equityWad": wad(10_000),
        "maintenanceMarginWad": wad(975),
    }
    # and it keeps everything above the capped IM
    system.withdraw(trader, "USDC", 8_500)
    assert system.health(trader).equity_wad == wad(1_500)


def test_a_compromised_quorum_claiming_zero_margin_is_floored_at_half_of_static(
    system: Client, open_position, trader: str, keeper: str
) -> None:
    open_position(size=10)
    system.set_price("ETH", 2_550)  # equity 500; static IM 2550, MM 1657.5
    _submit(system, _batch(system, [_entry(system, trader, 0, 0)]))
    assert _applied(system, trader)[2:] == (0, 0)
    assert _requirement(system, trader) == (wad(1_275), wad("828.75"))
    assert system.health(trader).liquidatable
    receipt = system.liquidate(keeper, trader, "ETH-PERP")
    [liq] = _events(system, receipt, "Liquidate")
    assert liq["account"] == trader
    assert liq["sizeAfter"] < wad(10)


def test_the_guardian_pause_blocks_risk_increasing_trades_under_a_compromised_attestation(
    system: Client, open_position, trader: str, maker: str, keeper: str
) -> None:
    opened = open_position(size=10)
    system.chain.send(system.fn("pause"), system.d.guardian, "pause")
    t, m = system.account(trader)["nonce"], system.account(maker)["nonce"]
    batch = _batch(
        system, [_entry(system, trader, 0, 0, t + 1), _entry(system, maker, 0, 0, m + 1)]
    )
    for fn in (
        system.fn(
            "settleTradeWithAttestation",
            0,
            trader,
            maker,
            wad(5),
            opened.price_e18,
            batch.as_tuple(),
            _sign(system, batch),
        ),
        system.fn("settleTrade", 0, trader, maker, wad(5), opened.price_e18),
    ):
        err = _revert(system, fn, system.d.matcher)
        assert (err.name, err.args_by_name) == ("Paused", {})
    assert system.position(trader, "ETH-PERP") == wad(10)
    assert _applied(system, trader) == (0, 0, 0, 0)


# ---------------------------------------------------------------------------- S7 events
def test_the_events_of_a_submission_rebuild_every_applied_entry_and_the_batch_record(
    system: Client, open_position, trader: str, maker: str, others: list[str]
) -> None:
    open_position(size=10)
    _submit(system, _batch(system, [_entry(system, others[0], 10, 5)], sequence=30))
    start = system.chain.w3.eth.block_number + 1
    batch = _batch(
        system,
        [
            _entry(system, trader, 2_000, 1_500),
            _entry(system, maker, 123_456, 98_765),
            _entry(system, others[0], 11, 6),  # already at 30: skipped
        ],
        sequence=29,
    )
    _submit(system, batch, sender=others[1])
    logs = system.chain.get_events(
        [system.d.attestation_verifier], start, system.chain.w3.eth.block_number
    )
    [applied] = [e.args for e in logs if e.name == "BatchApplied"]
    rebuilt = {
        e.account: (applied["sequence"], e.position_nonce, e.im_micro_usd, e.mm_micro_usd)
        for e in applied_entries(applied["entries"], applied["appliedBits"])
    }
    assert rebuilt == {trader: _applied(system, trader), maker: _applied(system, maker)}
    assert rebuilt[maker] == (29, system.account(maker)["nonce"], _micro(123_456), _micro(98_765))
    [skip] = [e.args for e in logs if e.name == "AttestationSkipped"]
    assert skip == {"account": others[0], "sequence": 29, "appliedSequence": 30}
    assert applied == {
        "sequence": 29,
        "digest": digest(batch, _domain(system)),
        "issuedAt": batch.issued_at,
        "keyEpoch": _verifier(system).functions.keyEpoch().call(),
        "priceAssetMask": batch.price_asset_mask,
        "pricesE18": list(batch.prices_e18),
        "entries": batch.packed_entries,  # I36: the one event carries every entry
        "appliedBits": [0b011],
        "applied": 2,
        "skipped": 1,
    }


def test_the_events_of_a_submission_carry_the_prices_that_decide_whether_it_is_in_force(
    system: Client, open_position, trader: str
) -> None:
    """S7: `submit` stores the batch's price mask and prices (the B11 band check reads them), so
    some event of the submission must carry them; calldata is not an event (and is nested when
    the batch arrives through withdrawWithAttestation / settleTradeWithAttestation)."""
    open_position(size=10)
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)], 42, assets=("ETH", "BTC", "SOL"))
    receipt = _submit(system, batch)
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))
    values: list = []
    for e in system.events(receipt):
        for value in e.args.values():
            values.extend(value if isinstance(value, list | tuple) else [value])
    assert batch.price_asset_mask in values, "no event carries priceAssetMask"
    assert all(p in values for p in batch.prices_e18), "no event carries pricesE18"
