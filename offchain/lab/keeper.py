"""The lab's keeper (`offchain.keeper`'s round, with batched transport) and the wire that runs the
shipped backstop (`offchain.backstop`) on the lab's transport.

A round is what `Keeper.step` does: rank every account the mirror finds under water (deepest
shortfall first), confirm each with `previewLiquidation`, skip those whose reward does not pay
for the gas (unless the penalty takes all its equity: a duty, as in the keeper), liquidate each
account's markets once. The differences are transport and one input:
each pass of previews and each pass of liquidations is one JSON-RPC batch (a 200-trader crash
would otherwise spend minutes in web3 round trips), and the ranking asks the caller for the
requirement in force, because under Gen 3 that is the attested one, which the static mirror
cannot see. The chain still decides: a preview that says HEALTHY is never liquidated.

After the keeper and the backstop, `resolve_insolvencies` resolves accounts left with negative
equity and no positions (`resolveInsolvency`, S6), as the keeper does, so bad debt is booked
rather than left latent. The backstop itself is the shipped one: `LabWire` only carries its calls
and transactions as batches mined at the scenario's clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from offchain.backstop import Call
from offchain.chain import Chain
from offchain.chain.client import MAX_UINT, Preview
from offchain.keeper import LIQUIDATION_GAS_ESTIMATE
from offchain.lab.ledger import Ledger
from offchain.lab.transport import Transport, Tx
from offchain.models import WAD, Deployment
from offchain.risk.health import Health

# A fixed gas price for the keeper's profitability check. Anvil's base fee drifts with how the
# lab's batches fill blocks, which would make the check (and so the run) depend on timing.
KEEPER_GAS_PRICE_WEI = 10**9
# Gas limits for transactions the lab sends unestimated; only gas used is reported.
LIQUIDATE_GAS_LIMIT = 1_500_000
TRADE_GAS_LIMIT = 1_000_000

Requirement = Callable[[str, Health, Mapping[int, int]], tuple[int, int]]


@dataclass(frozen=True)
class Liquidation:
    update: int
    account: str
    market_id: int
    closed_size_wad: int
    price_e18: int
    penalty_wad: int
    keeper_reward_wad: int
    gas_used: int
    # The account just before: equity and MM in force, and the funding it had paid since it
    # opened (settled and due), which tells a liquidation funding caused (metrics.py).
    equity_before_wad: int
    mm_before_wad: int
    funding_paid_wad: int


class LabKeeper:
    def __init__(
        self,
        *,
        chain: Chain,
        deployment: Deployment,
        ledger: Ledger,
        transport: Transport,
        address: str,
        requirement: Requirement,
        eth_asset: int,
    ) -> None:
        self.d = deployment
        self.ledger = ledger
        self.transport = transport
        self.address = address
        self.requirement = requirement
        self.eth_asset = eth_asset
        self._ch = chain.contract("Clearinghouse", deployment.clearinghouse)

    def candidates(self, prices_e18: Mapping[int, int], now: int) -> list[tuple[int, str]]:
        """(shortfall, account) of accounts below the MM in force at block time `now` (funding
        due counted), deepest first."""
        mirror = self.ledger.mirror
        ranked: list[tuple[int, str]] = []
        for account, state in mirror.accounts.items():
            if account == self.d.insurance_fund or not state.has_positions:
                continue
            static = mirror.health(account, dict(prices_e18), now=now)
            _, mm = self.requirement(account, static, prices_e18)
            if static.equity_wad < mm:
                ranked.append((mm - static.equity_wad, account))
        ranked.sort(reverse=True)
        return ranked

    def resolve_insolvencies(
        self, prices_e18: Mapping[int, int], timestamp_s: int, traders: Sequence[str]
    ) -> list[int]:
        """Resolves every trader with no positions and negative equity (S6); gas of each."""
        mirror = self.ledger.mirror
        txs = [
            Tx(
                self.address,
                self._ch.address,
                self.transport.codec.encode("Clearinghouse", "resolveInsolvency", account),
                LIQUIDATE_GAS_LIMIT,
                "resolve insolvency",
            )
            for account in traders
            if not mirror.accounts[account].has_positions
            and mirror.health(account, dict(prices_e18), now=timestamp_s).equity_wad < 0
        ]
        receipts = self.transport.send_all(txs, timestamp_s=timestamp_s)
        if receipts:
            self.ledger.pull()
        return [r.gas_used for r in receipts]

    def round(self, prices_e18: Mapping[int, int], timestamp_s: int) -> list[Liquidation]:
        """One keeper round at the current prices; every transaction mined at `timestamp_s`."""
        gas_cost_wad = (
            LIQUIDATION_GAS_ESTIMATE * KEEPER_GAS_PRICE_WEI * prices_e18[self.eth_asset] // WAD
        )
        tried: set[tuple[str, int]] = set()
        done: list[Liquidation] = []
        positions = self.ledger.mirror.accounts
        while True:
            pairs: list[tuple[str, int]] = []
            for _, account in self.candidates(prices_e18, timestamp_s):
                untried = [
                    m
                    for m, s in sorted(positions[account].positions.items())
                    if s and (account, m) not in tried
                ]
                if untried:
                    pairs.append((account, untried[0]))
            if not pairs:
                return done
            tried.update(pairs)
            previews = self.transport.call_all(
                [
                    (
                        self._ch.address,
                        self.transport.codec.encode("Clearinghouse", "previewLiquidation", a, m),
                    )
                    for a, m in pairs
                ]
            )
            txs: list[Tx] = []
            before = {
                account: self._before(account, prices_e18, timestamp_s) for account, _ in pairs
            }
            for (account, market_id), raw in zip(pairs, previews, strict=True):
                preview = self.transport.codec.decode("Clearinghouse", "previewLiquidation", raw)[0]
                p = Preview(*preview)
                # As the keeper: closing an account the penalty wipes out is a duty (SPEC I24).
                if not p.liquidatable or (
                    p.keeper_reward_wad < gas_cost_wad and not p.takes_all_equity
                ):
                    continue
                data = self.transport.codec.encode(
                    "Clearinghouse", "liquidate", account, market_id, MAX_UINT
                )
                txs.append(
                    Tx(
                        self.address,
                        self._ch.address,
                        data,
                        LIQUIDATE_GAS_LIMIT,
                        f"liquidate {account[:10]} on market {market_id}",
                    )
                )
            if not txs:
                continue
            receipts = self.transport.send_all(txs, timestamp_s=timestamp_s)
            gas_by_tx = {r.tx_hash.lower(): r.gas_used for r in receipts}
            for event in self.ledger.pull():
                if event.name != "Liquidate":
                    continue
                a = event.args
                done.append(
                    Liquidation(
                        update=self.ledger.tick,
                        account=str(a["account"]),
                        market_id=int(a["marketId"]),
                        closed_size_wad=abs(int(a["sizeDelta"])),
                        price_e18=int(a["priceE18"]),
                        penalty_wad=int(a["penaltyWad"]),
                        keeper_reward_wad=int(a["keeperRewardWad"]),
                        gas_used=gas_by_tx[event.tx_hash.lower()],
                        **before[str(a["account"])],
                    )
                )

    def _before(self, account: str, prices_e18: Mapping[int, int], now: int) -> dict[str, int]:
        """`Liquidation`'s view of the account before its liquidation (one per account a pass)."""
        prices = dict(prices_e18)
        static = self.ledger.mirror.health(account, prices, now=now)
        return {
            "equity_before_wad": static.equity_wad,
            "mm_before_wad": self.requirement(account, static, prices)[1],
            "funding_paid_wad": self.ledger.funding_paid_wad(account, prices, now),
        }


@dataclass
class LabWire:
    """The shipped backstop's `Wire` on the lab's transport: calls in one batch against the
    latest block, transactions in one batch mined at the scenario's clock (`now_s`). A revert
    raises: the backstop plans from the state it reads in the same block, so one is a bug."""

    transport: Transport
    now_s: Callable[[], int]
    gas_used: list[int] = field(default_factory=list)

    def call(self, to: str, data: bytes) -> bytes:
        return self.transport.call_all([(to, "0x" + data.hex())])[0]

    def send(self, calls: Sequence[Call]) -> list[bool]:
        txs = [Tx(c.sender, c.to, "0x" + c.data.hex(), TRADE_GAS_LIMIT, c.action) for c in calls]
        receipts = self.transport.send_all(txs, timestamp_s=self.now_s())
        self.gas_used.extend(r.gas_used for r in receipts)
        return [True] * len(receipts)
