"""Deploys and wires a marginsync system, then records it in the deployments registry.

On a local chain the oracle feeds and tokens are mocks (MockAggregator, MockERC20) that
`marginsync feed` and the demo drive; on a test network the same code deploys the same mocks,
so a protocol engineer can rehearse before pointing the router at real Chainlink feeds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from eth_utils import keccak

from offchain.attest import address_of
from offchain.chain.bindings import Chain
from offchain.models import (
    AssetRecord,
    CollateralRecord,
    Deployment,
    MarketRecord,
    SystemSpec,
    to_units,
)


@dataclass(frozen=True)
class Roles:
    """Who does what. On Anvil these default to distinct unlocked dev accounts."""

    owner: str
    matcher: str
    guardian: str
    insurance_fund: str

    @classmethod
    def from_accounts(cls, accounts: list[str]) -> Roles:
        owner = accounts[0]
        # Only the owner needs a key; the other roles may fall back to it on a one-key network.

        def pick(i: int) -> str:
            return accounts[i] if len(accounts) > i else owner

        return cls(owner=owner, matcher=pick(1), guardian=pick(2), insurance_fund=pick(3))


def dev_engine_keys(count: int) -> list[str]:
    """Deterministic engine keys for LOCAL chains only: derived from a public string, so anyone
    can sign with them. Real deployments pass their own signer addresses."""
    return ["0x" + keccak(text=f"marginsync dev engine key {i}").hex() for i in range(count)]


def deploy_system(
    chain: Chain,
    spec: SystemSpec,
    roles: Roles,
    progress: Callable[[str], None] = lambda _: None,
    engine_signers: list[str] | None = None,
) -> Deployment:
    """Deploys everything in `spec`. `engine_signers` are the attestation keys' addresses
    (default: the local dev keys, `dev_engine_keys`)."""
    owner = roles.owner
    start_block = chain.w3.eth.block_number

    progress("oracle router and feeds")
    router = chain.deploy("OracleRouter", owner, sender=owner)
    assets: list[AssetRecord] = []
    for asset_id, a in enumerate(spec.assets):
        feed = chain.deploy(
            "MockAggregator",
            a.feed_decimals,
            f"{a.symbol} / USD",
            to_units(a.price_usd, a.feed_decimals),
            sender=owner,
        )
        chain.send(
            router.functions.setFeed(
                asset_id,
                feed.address,
                a.heartbeat_s,
                a.outage_drift_bps_per_hour,
                to_units(a.min_price_usd, 18),
                to_units(a.max_price_usd, 18),
            ),
            owner,
            f"set feed {a.symbol}",
        )
        assets.append(
            AssetRecord(
                id=asset_id, symbol=a.symbol, feed=feed.address, feed_decimals=a.feed_decimals
            )
        )
    asset_id_of = {a.symbol: a.id for a in assets}

    progress("collateral tokens, clearinghouse and its liquidation and funding modules")
    tokens = [
        chain.deploy("MockERC20", f"Mock {c.symbol}", c.symbol, c.decimals, sender=owner)
        for c in spec.collaterals
    ]
    quote = spec.collaterals[0]
    # The clearinghouse checks that its modules share its oracle and insurance fund.
    module = chain.deploy("LiquidationModule", router.address, roles.insurance_fund, sender=owner)
    funding = chain.deploy("FundingModule", router.address, roles.insurance_fund, sender=owner)
    clearinghouse = chain.deploy(
        "Clearinghouse",
        owner,
        router.address,
        tokens[0].address,
        to_units(quote.deposit_cap_tokens, quote.decimals),
        roles.insurance_fund,
        spec.liquidation.as_tuple(),
        module.address,
        funding.address,
        sender=owner,
    )
    fns = clearinghouse.functions
    collaterals = [
        CollateralRecord(
            id=0,
            symbol=quote.symbol,
            token=tokens[0].address,
            decimals=quote.decimals,
            oracle_asset=None,
            weight_bps=quote.weight_bps,
        )
    ]
    for cid, (c, token) in enumerate(zip(spec.collaterals[1:], tokens[1:], strict=True), start=1):
        oracle_asset = asset_id_of[str(c.oracle_symbol)]
        chain.send(
            fns.listCollateral(
                token.address,
                oracle_asset,
                c.weight_bps,
                to_units(c.deposit_cap_tokens, c.decimals),
            ),
            owner,
            f"list collateral {c.symbol}",
        )
        collaterals.append(
            CollateralRecord(
                id=cid,
                symbol=c.symbol,
                token=token.address,
                decimals=c.decimals,
                oracle_asset=oracle_asset,
                weight_bps=c.weight_bps,
            )
        )

    progress("markets")
    markets: list[MarketRecord] = []
    for mid, m in enumerate(spec.markets):
        chain.send(
            fns.listMarket(
                asset_id_of[m.underlying],
                m.im_bps,
                m.mm_bps,
                m.liquidation_penalty_bps,
                m.price_band_bps,
                to_units(m.max_position_size, 18),
                to_units(m.open_interest_cap, 18),
            ),
            owner,
            f"list market {m.symbol}",
        )
        markets.append(
            MarketRecord(
                id=mid,
                symbol=m.symbol,
                oracle_asset=asset_id_of[m.underlying],
                im_bps=m.im_bps,
                mm_bps=m.mm_bps,
            )
        )

    verifier_address: str | None = None
    signers: tuple[str, ...] = ()
    if spec.attestation is not None:
        progress("attestation verifier")
        att = spec.attestation
        signers = tuple(
            engine_signers
            or [address_of(bytes.fromhex(k[2:])) for k in dev_engine_keys(att.signers)]
        )
        verifier = chain.deploy(
            "AttestationVerifier",
            owner,
            list(signers),
            att.threshold,
            att.params_tuple(),
            sender=owner,
        )
        chain.send(fns.setAttestor(verifier.address), owner, "set attestor")
        verifier_address = verifier.address

    progress("roles, the insurance fund and its standing offer")
    chain.send(fns.setMatcher(roles.matcher, True), owner, "set matcher")
    offer = chain.deploy(
        "BackstopOffer", owner, clearinghouse.address, spec.backstop_discount_bps, sender=owner
    )
    chain.send(fns.setMatcher(offer.address, True), owner, "set the backstop offer as matcher")
    adl = chain.deploy("AutoDeleverage", clearinghouse.address, sender=owner)
    chain.send(fns.setMatcher(adl.address, True), owner, "set auto-deleveraging as matcher")
    chain.send(fns.setGuardian(roles.guardian), owner, "set guardian")
    if spec.insurance_fund_usd > 0:
        amount = to_units(spec.insurance_fund_usd, quote.decimals)
        chain.send(tokens[0].functions.mint(owner, amount), owner, "mint insurance seed")
        chain.send(tokens[0].functions.approve(clearinghouse.address, amount), owner, "approve")
        chain.send(fns.deposit(roles.insurance_fund, 0, amount), owner, "seed insurance fund")

    return Deployment(
        chain_id=chain.chain_id,
        block=start_block,
        clearinghouse=clearinghouse.address,
        oracle_router=router.address,
        attestation_verifier=verifier_address,
        engine_signers=signers,
        owner=owner,
        matcher=roles.matcher,
        guardian=roles.guardian,
        insurance_fund=roles.insurance_fund,
        backstop_offer=offer.address,
        auto_deleverage=adl.address,
        assets=tuple(assets),
        collaterals=tuple(collaterals),
        markets=tuple(markets),
    )
