"""The keeper: finds liquidatable accounts from the event mirror and liquidates them.

Each round: sync the mirror, read every price once, rank accounts by shortfall (MM − equity,
exact integer mirror of the contract), confirm with `previewLiquidation`, check the reward pays
for the gas, then liquidate. Another keeper may win the race: that costs a failed pre-flight,
never a mined revert (D08).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from offchain.chain import Chain
from offchain.client import MAX_UINT, Client
from offchain.errors import ContractRevert, TransactionFailed
from offchain.mirror import AccountMirror

log = logging.getLogger("marginsync.keeper")

# Gas of one liquidation, for the profitability check before the precise estimate.
LIQUIDATION_GAS_ESTIMATE = 200_000


@dataclass(frozen=True)
class Liquidation:
    account: str
    market_id: int
    closed_size_wad: int
    price_e18: int
    keeper_reward_wad: int
    gas_used: int
    block: int


class Keeper:
    def __init__(self, client: Client, address: str, *, gas_price_asset: str = "ETH") -> None:
        self.client = client
        self.chain: Chain = client.chain
        self.address = address
        self.mirror = AccountMirror(
            client.chain, client.d.clearinghouse, client.d.insurance_fund, client.d.block
        )
        self.gas_price_asset = gas_price_asset

    def prices(self) -> dict[int, int]:
        """Usable prices by oracle asset id; an unusable feed is left out (its accounts wait)."""
        out: dict[int, int] = {}
        for a in self.client.d.assets:
            price, status = self.client.router.functions.tryPriceE18(a.id).call()
            if status == 0:
                out[a.id] = int(price)
        return out

    def candidates(self, prices: dict[int, int]) -> list[tuple[int, str]]:
        """(shortfall, account) for accounts the mirror finds under water, deepest first."""
        ranked: list[tuple[int, str]] = []
        for account, state in self.mirror.accounts.items():
            if account == self.client.d.insurance_fund or not state.has_positions:
                continue
            needed = {self.mirror.markets[m].oracle_asset for m, s in state.positions.items() if s}
            needed |= {
                self.mirror.collaterals[c].oracle_asset for c, b in state.balances.items() if b
            }
            if not needed <= prices.keys():
                continue
            h = self.mirror.health(account, prices)
            if h.liquidatable:
                ranked.append((h.maintenance_margin_wad - h.equity_wad, account))
        ranked.sort(reverse=True)
        return ranked

    def gas_cost_wad(self, gas: int) -> int:
        """USD cost of `gas` at the current gas price, priced with the chain's native asset."""
        gas_price_wei = int(self.chain.w3.eth.gas_price)
        eth_price = self.prices().get(self.client.d.asset(self.gas_price_asset).id, 0)
        return gas * gas_price_wei * eth_price // 10**18

    def step(self) -> list[Liquidation]:
        """One round over every under-water account. Returns what it liquidated."""
        self.mirror.sync()
        prices = self.prices()
        done: list[Liquidation] = []
        for _, account in self.candidates(prices):
            positions = [m for m, s in self.mirror.accounts[account].positions.items() if s]
            for market_id in positions:
                result = self._try_liquidate(account, market_id)
                if result is not None:
                    done.append(result)
        if done:
            self.mirror.sync()
        return done

    def _try_liquidate(self, account: str, market_id: int) -> Liquidation | None:
        preview = self.client.preview(account, market_id)
        if not preview.liquidatable:
            return None
        if preview.keeper_reward_wad < self.gas_cost_wad(LIQUIDATION_GAS_ESTIMATE):
            log.info("skip %s market %d: reward below gas cost", account, market_id)
            return None
        try:
            receipt = self.client.liquidate(self.address, account, market_id, MAX_UINT)
        except (ContractRevert, TransactionFailed) as exc:
            # Someone else got there first, or prices moved: the next round re-ranks.
            log.info("liquidation of %s on market %d not done: %s", account, market_id, exc)
            return None
        event = next(e for e in self.chain.events(receipt) if e.name == "Liquidate")
        result = Liquidation(
            account=account,
            market_id=market_id,
            closed_size_wad=abs(int(event.args["sizeDelta"])),
            price_e18=int(event.args["priceE18"]),
            keeper_reward_wad=int(event.args["keeperRewardWad"]),
            gas_used=int(receipt["gasUsed"]),
            block=int(receipt["blockNumber"]),
        )
        log.info("liquidated %s", result)
        return result

    def run(
        self,
        *,
        poll_interval_s: float = 1.0,
        rounds: int | None = None,
        on_round: Callable[[int, list[Liquidation]], None] = lambda _r, _l: None,
    ) -> list[Liquidation]:
        """Polls new blocks and liquidates until `rounds` are done (forever if None)."""
        total: list[Liquidation] = []
        last_block = -1
        n = 0
        while rounds is None or n < rounds:
            block = self.chain.w3.eth.block_number
            if block != last_block:
                last_block = block
                done = self.step()
                total.extend(done)
                on_round(n, done)
                n += 1
            else:
                time.sleep(poll_interval_s)
        return total
