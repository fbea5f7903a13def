"""The keeper: liquidates under-water accounts found from contract events, at a profit, safely.

One round per new block (`run`), each a thin pass over library calls that tests drive directly:

1. Settle: receipts of our in-flight transactions; the `TxSender` replaces stuck ones at the same
   nonce with a fee bump (THREATS D03) and re-sends lost ones byte for byte (D05, D09).
2. Sync: accounts from clearinghouse events, attestations from verifier events (one `eth_getLogs`).
3. Rank: every account by its shortfall against the maintenance margin IN FORCE, which is the
   attested one while S1 holds and the static one otherwise, exactly as `_healthAt` decides;
   deepest first.
4. Act on at most `max_per_round` accounts (E08: a backlog after an oracle outage drains in
   stages, deepest first, not in a stampede): `previewLiquidation`, a pre-flight estimate, a gas
   check (the reward must pay for the gas at the next block's fees; the fee cap is derived from
   the reward, so it never pays more for gas than it earns, D02), then a journaled send.
5. Wait briefly for receipts; results are read from `Liquidate` events.

One process may keep several venues (`run_keepers`): a `Keeper` per venue, each with its own
chain, mirror and journal, polled in turn.

Racing keepers (D08, E03): every liquidation asks for `maxCloseSize = type(uint256).max`, so the
contract alone decides what closes from the state the transaction lands on. A loser fails its
pre-flight (nothing sent) or reverts cheaply on the `NoPosition` / `AccountHealthy` checks, and
the state after is the same whoever won.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector
from pydantic import BaseModel, ConfigDict, Field
from web3.types import RPCEndpoint

from offchain.chain import Chain, checksum
from offchain.chain.client import MAX_UINT, Client, Preview
from offchain.chain.journal import Journal, Outcome, TxState
from offchain.chain.sender import GWEI, FeePolicy, Fees, TxSender
from offchain.chain.signers import tx_signer_for
from offchain.errors import SendRejected
from offchain.link.mirror import linked_margin_mirror
from offchain.models import WAD, Deployment
from offchain.risk.health import BPS

log = logging.getLogger("marginsync.keeper")

# `IOracleRouter.PriceStatus.NO_FEED`: an asset without a feed has no quote to value it at.
NO_FEED = 1
# Gas of a typical liquidation, for callers that price one without estimating (the lab).
LIQUIDATION_GAS_ESTIMATE = 200_000
# No liquidation costs less: the quick check before the estimate skips only hopeless rewards,
# and is never stricter than the precise check after it.
LIQUIDATION_GAS_FLOOR = 80_000
# Headroom on the next block's base fee a transaction's fee cap must leave (one full block).
BASE_FEE_HEADROOM_BPS = 11_250


class KeeperConfig(BaseModel):
    """How the keeper spends gas and how fast it drains a backlog."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_per_round: int = Field(default=20, ge=1)
    gas_share_bps: int = Field(default=BPS, gt=0, le=BPS)
    min_profit_usd: float = Field(default=0.0, ge=0)
    # 2 % of a 30M-gas block: a liquidation estimated above it is not sent (E01, E07).
    gas_budget: int = Field(default=600_000, gt=21_000)
    base_fee_multiplier: int = Field(default=2, ge=1)
    max_fee_gwei: float = Field(default=5_000.0, gt=0)
    bump_bps: int = Field(default=1_250, ge=1_000)
    stuck_after_blocks: int = Field(default=3, ge=1)
    stuck_after_s: float = Field(default=36.0, gt=0)
    receipt_timeout_s: float = Field(default=30.0, ge=0)
    resolve_insolvency: bool = True

    def fee_policy(self) -> FeePolicy:
        return FeePolicy(
            base_fee_multiplier=self.base_fee_multiplier,
            max_fee_cap_wei=int(self.max_fee_gwei * GWEI),
            bump_bps=self.bump_bps,
            stuck_after_blocks=self.stuck_after_blocks,
            stuck_after_s=self.stuck_after_s,
        )


@dataclass(frozen=True)
class Liquidation:
    account: str
    market_id: int
    closed_size_wad: int
    price_e18: int
    keeper_reward_wad: int
    gas_used: int
    block: int
    tx_hash: str = ""
    gas_cost_wad: int = 0  # what the gas cost, in USD at the oracle's ETH price


@dataclass
class RoundReport:
    """What one round saw and did; the CLI prints it, tests assert on it."""

    block: int = 0
    candidates: int = 0
    previewed: int = 0
    sent: int = 0
    liquidated: int = 0
    unprofitable: int = 0
    deferred: int = 0  # liquidatable, but beyond this round's `max_per_round`
    lost_preflight: int = 0  # the pre-flight reverted: someone else was first, or prices moved
    lost_on_chain: int = 0  # mined and reverted: lost a race after the pre-flight
    over_budget: int = 0
    resolved: int = 0
    congested: bool = False  # a transaction of ours is stuck: nothing new was queued behind it
    # Transactions reported in an earlier round whose block left the chain: those results are
    # void; the same transactions are pending again and report anew when they land.
    reorged: list[str] = field(default_factory=list)


class _Wire:
    """The keeper's per-round calls over raw JSON-RPC, encoded and decoded with eth_abi from the
    compiled ABIs. web3's contract layer spends milliseconds a call on ABI lookups and
    formatting: at a few hundred accounts that was most of a round."""

    def __init__(self, chain: Chain, d: Deployment) -> None:
        self._chain = chain
        self.clearinghouse = str(checksum(d.clearinghouse))
        self.router = str(checksum(d.oracle_router))
        abi = {
            str(i.get("name")): i
            for name in ("Clearinghouse", "OracleRouter")
            for i in chain.artifacts.abi(name)
            if i.get("type") in ("function", "event")
        }
        self._selectors = {
            name: function_abi_to_4byte_selector(abi[name])  # type: ignore[arg-type]
            for name in (
                "liquidate",
                "resolveInsolvency",
                "previewLiquidation",
                "tryPriceE18",
                "quotes",
            )
        }
        liquidate = abi["Liquidate"]
        self.liquidate_topic = "0x" + event_abi_to_log_topic(liquidate).hex()  # type: ignore[arg-type]
        self._liquidate_data = [str(i["type"]) for i in liquidate["inputs"] if not i["indexed"]]

    def data(self, function: str, types: list[str], args: list[Any]) -> bytes:
        return self._selectors[function] + abi_encode(types, args)

    def liquidate(self, account: str, market_id: int) -> bytes:
        # maxCloseSize = max: whoever lands first, the contract decides what closes (D08).
        return self.data(
            "liquidate", ["address", "uint256", "uint256"], [account, market_id, MAX_UINT]
        )

    def resolve(self, account: str) -> bytes:
        return self.data("resolveInsolvency", ["address"], [account])

    def preview(self, account: str, market_id: int) -> Preview:
        data = self.data("previewLiquidation", ["address", "uint256"], [account, market_id])
        (fields,) = abi_decode(
            ["(uint8,bool,uint256,uint256,uint256,uint256,int256,uint256)"],
            self._call(self.clearinghouse, data),
        )
        return Preview(*fields)

    def try_price(self, asset: int) -> tuple[int, int]:
        out = self._call(self.router, self.data("tryPriceE18", ["uint256"], [asset]))
        price, status = abi_decode(["uint256", "uint8"], out)
        return int(price), int(status)

    def quotes(self, asset_mask: int) -> dict[int, tuple[int, int, int]]:
        """(status, low, high) by asset for every bit of `asset_mask`: the router's quotes, a
        broken feed's included (SPEC I18)."""
        out = self._call(self.router, self.data("quotes", ["uint256"], [asset_mask]))
        _, rows = abi_decode(["bool", "(uint8,uint256,uint256)[]"], out)
        assets = [a for a in range(asset_mask.bit_length()) if asset_mask >> a & 1]
        return {
            a: (int(st), int(lo), int(hi)) for a, (st, lo, hi) in zip(assets, rows, strict=True)
        }

    def genesis(self) -> str:
        return str(self._rpc("eth_getBlockByNumber", ["0x0", False])["result"]["hash"])

    def latest_block(self) -> tuple[int, int]:
        """(number, timestamp) of the latest block."""
        block = self._rpc("eth_getBlockByNumber", ["latest", False])["result"]
        return int(block["number"], 16), int(block["timestamp"], 16)

    def estimate(self, sender: str, to: str, data: bytes) -> int | str:
        """Gas for the call, or the decoded reason it would revert."""
        tx = {"from": sender, "to": to, "data": "0x" + data.hex()}
        response = self._rpc("eth_estimateGas", [tx])
        if "error" not in response:
            return int(response["result"], 16)
        error = response["error"]
        revert = error.get("data")
        if isinstance(revert, dict):  # some nodes nest it
            revert = revert.get("data")
        if isinstance(revert, str) and revert.startswith("0x") and len(revert) >= 10:
            name, args = self._chain.artifacts.decode_error(bytes.fromhex(revert[2:]))
            return f"{name}({', '.join(f'{k}={v}' for k, v in args.items())})"
        return str(error.get("message", error))

    def liquidate_events(self, receipt: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`Liquidate` events of a raw receipt, with the fields a `Liquidation` needs."""
        out: list[dict[str, Any]] = []
        for log in receipt["logs"]:
            topics = log["topics"]
            if str(log["address"]).lower() != self.clearinghouse.lower():
                continue
            if not topics or topics[0] != self.liquidate_topic:
                continue
            values = abi_decode(self._liquidate_data, bytes.fromhex(log["data"][2:]))
            names = ["sizeDelta", "priceE18", "penaltyWad", "keeperRewardWad"]
            event = dict(zip(names, values[:4], strict=True))
            event["account"] = str(checksum("0x" + topics[1][-40:]))
            event["marketId"] = int(topics[2], 16)
            out.append(event)
        return out

    def _call(self, to: str, data: bytes) -> bytes:
        response = self._rpc("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"])
        if "error" in response:
            raise requests.RequestException(f"eth_call failed: {response['error']}")
        return bytes.fromhex(str(response["result"])[2:])

    def _rpc(self, method: str, params: list[Any]) -> dict[str, Any]:
        return dict(self._chain.w3.provider.make_request(RPCEndpoint(method), params))


class Keeper:
    def __init__(
        self,
        client: Client,
        address: str,
        *,
        config: KeeperConfig | None = None,
        journal: Path | str | None = None,
        gas_price_asset: str = "ETH",
    ) -> None:
        """`journal`: the SQLite write-ahead journal of this key's transactions; without one
        (in memory) a restart cannot tell what the previous process sent."""
        self.client = client
        self.chain: Chain = client.chain
        self.address = str(checksum(address))
        self.config = config or KeeperConfig()
        # On a linked venue the link's certificates first, as the contract asks (X2, X6).
        self.mirror = linked_margin_mirror(client.chain, client.d)
        self.gas_price_asset = gas_price_asset
        self._wire = _Wire(client.chain, client.d)
        self.sender = TxSender(
            self.chain.w3,
            tx_signer_for(self.chain, self.address),
            Journal(
                journal or ":memory:",
                chain_id=self.chain.chain_id,
                sender=self.address,
                genesis=self._wire.genesis(),
            ),
            chain_id=self.chain.chain_id,
            policy=self.config.fee_policy(),
        )
        self.last_round = RoundReport()
        self._eth_price_e18 = 0  # last usable price of the gas asset
        self._min_profit_wad = int(self.config.min_profit_usd * WAD)
        self._prices: dict[int, int] = {}
        self._quoted: dict[int, tuple[int, int]] = {}  # broken feeds' (low, high) quotes
        # Transactions a previous process journaled: finished or re-broadcast before any new one.
        self._settled = self.sender.resume()
        self._last_block = -1
        self._standing: dict[tuple[str, str, int], Liquidation] = {}

    # ------------------------------------------------------------------ reading
    def prices(self) -> dict[int, int]:
        """Usable prices by oracle asset id. A broken feed is left out of them; its quote (the
        last good price widened with the outage, SPEC I18) goes to `_quoted`, so an account
        with a position there is still ranked, and liquidated in its other markets, exactly as
        the contract values it."""
        mask = sum(1 << a.id for a in self.client.d.assets)
        out: dict[int, int] = {}
        self._quoted = {}
        for asset, (status, low, high) in self._wire.quotes(mask).items():
            if status == 0:
                out[asset] = low
            elif status != NO_FEED and high:
                self._quoted[asset] = (low, high)
        return out

    def candidates(self, prices: dict[int, int], now: int | None = None) -> list[tuple[int, str]]:
        """(shortfall against the MM in force, account) of accounts under water, deepest first.
        `now` is the block time the in-force rule is evaluated at (default: the latest block)."""
        if now is None:
            now = self._wire.latest_block()[1]
        ranked: list[tuple[int, str]] = []
        for account, state in self.mirror.accounts.items():
            if account == self.client.d.insurance_fund or not state.has_positions:
                continue
            broken = self._needed_assets(account) - prices.keys()
            if not broken <= self._quoted.keys():
                continue
            if broken:
                # Valued at the quotes, and no attestation is in force meanwhile (I18, S2).
                low = {**prices, **{a: self._quoted[a][0] for a in broken}}
                h = self.mirror.health(
                    account, low, {a: self._quoted[a][1] for a in broken}, now=now
                )
                mm = h.maintenance_margin_wad
            else:
                h = self.mirror.health(account, prices, now=now)  # funding owed by now counts
                mm = self.mirror.maintenance_in_force(
                    account, h.initial_margin_wad, h.maintenance_margin_wad, prices, now
                )
            if h.equity_wad < mm:
                ranked.append((mm - h.equity_wad, account))
        ranked.sort(reverse=True)
        return ranked

    def insolvent(self, prices: dict[int, int]) -> list[str]:
        """Accounts with no positions and negative equity: bad debt nobody has booked yet (S6)."""
        out: list[str] = []
        for account, state in self.mirror.accounts.items():
            if account == self.client.d.insurance_fund or state.has_positions:
                continue
            if state.cash_wad >= 0 or not self._needed_assets(account) <= prices.keys():
                continue
            if self.mirror.health(account, prices).equity_wad < 0:
                out.append(account)
        return out

    def fee_cap_wei(self, reward_wad: int, gas: int) -> int:
        """The highest maxFeePerGas at which `gas` costs no more than the reward allows."""
        budget_wad = reward_wad * self.config.gas_share_bps // BPS - self._min_profit_wad
        if budget_wad <= 0 or self._eth_price_e18 == 0:
            return 0
        return budget_wad * WAD // (gas * self._eth_price_e18)

    def pays(self, reward_wad: int, gas: int, fees: Fees) -> bool:
        """True if the reward covers `gas` at the next block's fees with one block of base-fee
        headroom, so the transaction is not priced out the moment it is sent."""
        needed = fees.base_fee_wei * BASE_FEE_HEADROOM_BPS // BPS + fees.priority_fee_wei
        return self.fee_cap_wei(reward_wad, gas) >= needed

    # ------------------------------------------------------------------ one round
    def step(self) -> list[Liquidation]:
        """One round. Returns the liquidations whose receipts it read."""
        report = RoundReport()
        done = self._results(self._settled + self.sender.poll(), report)
        self._settled = []
        self.mirror.sync()
        report.block, now = self._wire.latest_block()
        prices = self._prices = self.prices()
        gas_asset = self.client.d.asset(self.gas_price_asset).id
        self._eth_price_e18 = prices.get(gas_asset, self._eth_price_e18)
        ranked = self.candidates(prices, now)
        report.candidates = len(ranked)
        insolvent = self.insolvent(prices) if self.config.resolve_insolvency else []
        if (ranked or insolvent) and self.sender.congested:
            report.congested = True  # a replacement is under way; new nonces would queue
        elif ranked or insolvent:
            self._act(ranked, insolvent, report)
        if report.sent:
            done += self._results(self.sender.wait(self.config.receipt_timeout_s), report)
        self.last_round = report
        return done

    def _act(
        self, ranked: list[tuple[int, str]], insolvent: list[str], report: RoundReport
    ) -> None:
        fees = self.sender.fees()
        busy = {purpose.split(":")[1] for purpose in self.sender.purposes()}
        slots = self.config.max_per_round - len(self.sender.in_flight)
        for _, account in ranked:
            if account in busy:
                continue
            if slots <= 0:
                report.deferred += 1
                continue
            if self._liquidate(account, fees, report):
                slots -= 1
        for account in insolvent:
            if slots > 0 and account not in busy and self._resolve(account, fees, report):
                slots -= 1

    def _liquidate(self, account: str, fees: Fees, report: RoundReport) -> bool:
        """Previews `account`'s largest position (its biggest MM term: the most shortfall freed
        and the largest reward) and sends its liquidation if it pays. True if sent."""
        state = self.mirror.accounts[account]
        prices = self._prices
        order = sorted(
            (m for m, s in state.positions.items() if s),
            key=lambda m: (
                abs(state.positions[m])
                * prices.get(self.mirror.markets[m].oracle_asset, 0)
                * self.mirror.markets[m].mm_bps
            ),
            reverse=True,
        )
        for market_id in order:
            # By id, not through the registry: markets listed after deployment count too.
            preview = self._wire.preview(account, market_id)
            report.previewed += 1
            if preview.status_name == "NO_POSITION":
                continue  # the mirror is behind the chain by a block; try the next market
            if not preview.liquidatable:
                return False
            return self._send_liquidation(account, market_id, state.nonce, preview, fees, report)
        return False

    def _send_liquidation(
        self,
        account: str,
        market_id: int,
        nonce: int,
        preview: Preview,
        fees: Fees,
        report: RoundReport,
    ) -> bool:
        reward = preview.keeper_reward_wad
        # The penalty, so the reward, is capped by the account's equity (SPEC I24): closing an
        # account it wipes out is the same bad-debt duty as resolving one, sent at the configured
        # fee cap when that duty is on, whatever the reward.
        duty = preview.takes_all_equity and self.config.resolve_insolvency
        if not duty and not self.pays(reward, LIQUIDATION_GAS_FLOOR, fees):
            report.unprofitable += 1
            log.info("skip %s market %d: reward %s pays no gas", account, market_id, reward)
            return False
        data = self._wire.liquidate(account, market_id)
        estimate = self._preflight(data, f"liquidate {account} on market {market_id}", report)
        if estimate is None:
            return False
        if estimate > self.config.gas_budget:
            report.over_budget += 1
            log.warning("skip %s market %d: %d gas over budget", account, market_id, estimate)
            return False
        gas = min(estimate * 12 // 10 + 10_000, self.config.gas_budget)
        if not duty and not self.pays(reward, gas, fees):
            report.unprofitable += 1
            log.info(
                "skip %s market %d: reward %s below gas of %d", account, market_id, reward, gas
            )
            return False
        purpose = f"liquidate:{account}:{market_id}:{nonce}"
        cap = self.sender.policy.max_fee_cap_wei if duty else self.fee_cap_wei(reward, gas)
        return self._send(data, gas, purpose, cap, fees, report)

    def _resolve(self, account: str, fees: Fees, report: RoundReport) -> bool:
        """Books an insolvent account's bad debt (`resolveInsolvency`). It pays no reward: the
        fee cap is the configured maximum."""
        data = self._wire.resolve(account)
        estimate = self._preflight(data, f"resolve insolvency of {account}", report)
        if estimate is None or estimate > self.config.gas_budget:
            return False
        cap = self.sender.policy.max_fee_cap_wei
        gas = estimate * 12 // 10 + 10_000
        return self._send(data, gas, f"resolve:{account}", cap, fees, report)

    def _preflight(self, data: bytes, action: str, report: RoundReport) -> int | None:
        """Gas estimate, or None when the call would revert (nothing is sent)."""
        estimate = self._wire.estimate(self.address, self._wire.clearinghouse, data)
        if isinstance(estimate, str):
            report.lost_preflight += 1
            log.info("%s not sent: %s", action, estimate)
            return None
        return estimate

    def _send(
        self, data: bytes, gas: int, purpose: str, cap: int, fees: Fees, report: RoundReport
    ) -> bool:
        try:
            p = self.sender.send(
                self._wire.clearinghouse, data, gas, purpose=purpose, fee_cap_wei=cap, fees=fees
            )
        except SendRejected as exc:
            log.warning("%s refused by the node: %s", purpose, exc)
            return False
        report.sent += 1
        log.info(
            "sent %s: nonce %d, gas %d, max fee %.3f gwei",
            purpose,
            p.nonce,
            gas,
            p.max_fee_wei / GWEI,
        )
        return True

    def _results(self, outcomes: list[Outcome], report: RoundReport) -> list[Liquidation]:
        out: list[Liquidation] = []
        for o in outcomes:
            if o.state is TxState.REORGED:
                report.reorged.append(str(o.tx_hash))
                log.warning("%s: its block %s left the chain; re-sent", o.purpose, o.block)
            elif o.state is TxState.REVERTED:
                report.lost_on_chain += 1
                log.info("%s reverted on-chain (%d gas): lost a race", o.purpose, o.gas_used)
            elif o.state is not TxState.MINED or o.receipt is None:
                log.info("%s ended %s %s", o.purpose, o.state, o.detail)
            elif o.purpose.startswith("resolve:"):
                report.resolved += 1
            else:
                out += [self._liquidation(e, o) for e in self._wire.liquidate_events(o.receipt)]
        report.liquidated += len(out)
        return out

    def _liquidation(self, e: Mapping[str, Any], o: Outcome) -> Liquidation:
        result = Liquidation(
            account=e["account"],
            market_id=e["marketId"],
            closed_size_wad=abs(int(e["sizeDelta"])),
            price_e18=int(e["priceE18"]),
            keeper_reward_wad=int(e["keeperRewardWad"]),
            gas_used=o.gas_used,
            block=int(o.block or 0),
            tx_hash=str(o.tx_hash),
            gas_cost_wad=o.gas_used * o.effective_gas_price_wei * self._eth_price_e18 // WAD,
        )
        log.info("liquidated %s", result)
        return result

    def _needed_assets(self, account: str) -> set[int]:
        state = self.mirror.accounts[account]
        needed = {self.mirror.markets[m].oracle_asset for m, s in state.positions.items() if s}
        return needed | {
            self.mirror.collaterals[c].oracle_asset for c, b in state.balances.items() if b
        }

    # ------------------------------------------------------------------ the loop
    def poll(self) -> list[Liquidation] | None:
        """A round if the chain has a block the last round did not see, else None. A node that
        does not answer is None too: what was sent is journaled; the next round picks it up."""
        try:
            block = self.chain.w3.eth.block_number
            if block == self._last_block:
                return None
            done = self.step()
        except requests.RequestException as exc:
            log.warning("round interrupted by %s: %s", type(exc).__name__, exc)
            return None
        self._last_block = block
        # A liquidation whose block a reorganisation took away counts once, when it lands again.
        void = set(self.last_round.reorged)
        self._standing = {k: v for k, v in self._standing.items() if k[0] not in void}
        self._standing.update({(d.tx_hash, d.account, d.market_id): d for d in done})
        return done

    def run(
        self,
        *,
        poll_interval_s: float = 1.0,
        rounds: int | None = None,
        on_round: Callable[[int, list[Liquidation]], None] = lambda _r, _l: None,
    ) -> list[Liquidation]:
        """One round per new block until `rounds` are done (forever if None). Returns the
        liquidations of every round so far that still stand."""
        run_keepers(
            [self],
            poll_interval_s=poll_interval_s,
            rounds=rounds,
            on_round=lambda _keeper, n, done: on_round(n, done),
        )
        return list(self._standing.values())


def run_keepers(
    keepers: Sequence[Keeper],
    *,
    poll_interval_s: float = 1.0,
    rounds: int | None = None,
    on_round: Callable[[Keeper, int, list[Liquidation]], None] = lambda _k, _r, _l: None,
) -> None:
    """One loop for the keepers of several venues (one chain each): each takes a round when
    its own chain has a new block and liquidates by the requirement in force on its own venue
    (its `MarginMirror`); `rounds` counts per keeper (forever if None). `on_round` gets the
    keeper that acted, its round number and its liquidations."""
    count = [0] * len(keepers)
    while rounds is None or min(count) < rounds:
        acted = False
        for i, keeper in enumerate(keepers):
            if rounds is not None and count[i] >= rounds:
                continue
            done = keeper.poll()
            if done is None:
                continue
            acted = True
            on_round(keeper, count[i], done)
            count[i] += 1
        if not acted:
            time.sleep(poll_interval_s)
