"""`marginsync backstop`: the insurance fund's backstop as a service (`offchain/backstop.py`),
sending through the journaled transaction sender (`TxSender`), hedging on the development
venue."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from offchain.backstop import Backstop, BackstopConfig, BackstopReport, Call, matcher_hedge
from offchain.chain import Chain, checksum
from offchain.chain.client import Client, connect
from offchain.chain.journal import Journal, TxState, default_journal
from offchain.chain.mirror import AccountMirror
from offchain.chain.sender import TxSender
from offchain.chain.signers import tx_signer_for
from offchain.errors import ConfigError, ContractRevert, SendRejected, TransactionFailed
from offchain.models import WAD, Deployment
from offchain.ops.heartbeat import BackstopStatus, Heartbeat
from offchain.ops.venue import DEV_MAKER, require_signer
from offchain.settings import Settings

console = Console(soft_wrap=True)
# How long a round waits for one of its transactions, as `Chain.send` does; the sender bumps a
# stuck one meanwhile, and one still unmined is journaled and settled by a later round.
WAIT_S = 120.0


class ChainWire:
    """The backstop's calls as `eth_call`s and its transactions through the one transaction
    sender (`TxSender`: nonces, EIP-1559 fees and bumps, a write-ahead journal, same-bytes
    retries), each pre-flighted with `eth_estimateGas` and waited for, so a round still learns
    which went through. A take another taker beat fails its pre-flight: nothing is sent. A call
    from another key (the development venue's matcher hedging) goes through `Chain.send`, as
    every other call of that venue does: a second sender counting that key's nonces beside
    `Chain.send` would race it."""

    def __init__(
        self,
        chain: Chain,
        contracts: dict[str, str],
        address: str,
        journal: Path | str = ":memory:",
        *,
        wait_s: float = WAIT_S,
    ) -> None:
        """`journal`: the SQLite write-ahead journal of `address`'s transactions; what a
        previous process journaled is settled (or re-broadcast byte for byte) here, before any
        new transaction (THREATS D09). In memory, a restart cannot tell what was sent."""
        self.chain = chain
        self.address = str(checksum(address))
        self.wait_s = wait_s
        self._contracts: dict[str, Any] = {
            str(checksum(a)).lower(): chain.contract(name, a) for name, a in contracts.items()
        }
        self.sender = TxSender(
            chain.w3,
            tx_signer_for(chain, self.address),
            Journal(
                journal, chain_id=chain.chain_id, sender=self.address, genesis=chain.genesis_hash
            ),
            chain_id=chain.chain_id,
        )
        for outcome in self.sender.resume():
            console.print(
                f"backstop: journaled {outcome.purpose} at nonce {outcome.nonce}: {outcome.state}"
            )

    def call(self, to: str, data: bytes) -> bytes:
        return bytes(self.chain.w3.eth.call({"to": checksum(to), "data": data}))

    def send(self, calls: Sequence[Call]) -> list[bool]:
        out = []
        for c in calls:
            fn, args = self._contracts[c.to.lower()].decode_function_input(c.data)
            bound = fn(**args)
            try:
                if checksum(c.sender) != self.address:
                    self.chain.send(bound, c.sender, c.action)
                    out.append(True)
                else:
                    out.append(self._send(c, self.chain.gas_limit(bound, c.sender, c.action)))
            except (ContractRevert, TransactionFailed, SendRejected) as exc:
                console.print(f"backstop: {c.action} did not go through: {exc}")
                out.append(False)
        return out

    def _send(self, c: Call, gas: int) -> bool:
        """Journals and sends `c`, then waits for its outcome (and settles any other)."""
        p = self.sender.send(c.to, c.data, gas, purpose=c.action)
        mined = False
        for o in self.sender.wait(self.wait_s):
            if (o.nonce, o.purpose) == (p.nonce, p.purpose) and o.state is TxState.MINED:
                mined = True
            elif o.state is not TxState.MINED:
                console.print(f"backstop: {o.purpose} did not go through: {o.state} {o.tx_hash}")
        if not mined and p.id in {q.id for q in self.sender.in_flight}:
            console.print(
                f"backstop: {c.action} not mined after {self.wait_s:g} s; journaled, "
                "it settles in a later round"
            )
        return mined


def contracts_of(d: Deployment) -> dict[str, str]:
    """The contracts the backstop sends to, by artifact name."""
    named = {"Clearinghouse": d.clearinghouse, "BackstopOffer": d.backstop_offer}
    named["AutoDeleverage"] = d.auto_deleverage
    return {name: address for name, address in named.items() if address}


def positions_from_events(chain: Chain, d: Deployment) -> Callable[[], list[str]]:
    """Accounts holding a position, from the clearinghouse's events (the ADL candidates)."""
    mirror = AccountMirror(chain, d.clearinghouse, d.insurance_fund, d.block)

    def accounts() -> list[str]:
        mirror.sync()
        return [a for a, state in mirror.accounts.items() if state.has_positions]

    return accounts


@click.command()
@click.option("--account", default=None, help="The backstop's account [default: Anvil's 5th].")
@click.option("--once", is_flag=True, help="One round, then exit.")
@click.option("--poll", "poll_s", type=click.FloatRange(min=0.05), default=1.0, show_default=True)
@click.option(
    "--no-hedge",
    is_flag=True,
    help="Keep what it takes instead of unwinding it with the development venue's counterparty.",
)
@click.option(
    "--capital-use-bps",
    type=click.IntRange(1, 10_000),
    default=9_000,
    show_default=True,
    help="Share of the free margin (equity - IM) one round may commit.",
)
@click.option("--status-every", "status_every_s", type=click.FloatRange(min=0), default=10.0)
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite write-ahead journal [default: .marginsync/backstop-<chain>-<address>.sqlite].",
)
@click.pass_context
def backstop(
    ctx: click.Context,
    account: str | None,
    once: bool,
    poll_s: float,
    no_hedge: bool,
    capital_use_bps: int,
    status_every_s: float,
    journal_path: Path | None,
) -> None:
    """Take over what the insurance fund absorbed (its standing offer), unwind it, book its loss."""
    settings: Settings = ctx.obj
    client = Client(*connect(settings))
    chain, d = client.chain, client.d
    accounts = chain.accounts
    given = account or (accounts[0] if settings.private_key else None)
    if given is None and len(accounts) <= BACKSTOP_INDEX:
        raise ConfigError(
            "no backstop account: no MARGINSYNC_PRIVATE_KEY and the node unlocks no account 5",
            "set MARGINSYNC_PRIVATE_KEY to the backstop's key, or name one with --account",
        )
    address = require_signer(
        client, given or accounts[BACKSTOP_INDEX], "backstop", "give a key or an unlocked account"
    )
    journal = journal_path or default_journal(
        "backstop", chain.chain_id, chain.genesis_tag, address
    )
    journal.parent.mkdir(parents=True, exist_ok=True)
    b = Backstop(
        chain,
        d,
        address,
        ChainWire(chain, contracts_of(d), address, journal),
        hedge=None if no_hedge else matcher_hedge(chain, d, address, DEV_MAKER),
        config=BackstopConfig(capital_use_bps=capital_use_bps),
        accounts=positions_from_events(chain, d),
    )
    status = BackstopStatus(lambda: chain.w3.eth.block_number)

    def report(n: int, r: BackstopReport) -> None:
        status.on_round(r)
        for t in r.taken:
            console.print(
                f"took {t.size_delta_wad / WAD:+,.4f} on market {t.market_id} @ "
                f"{t.price_e18 / WAD:,.2f} (oracle {t.oracle_price_e18 / WAD:,.2f}), "
                f"discount ${t.discount_wad / WAD:,.2f}"
            )
        if r.booked_wad:
            console.print(f"booked ${r.booked_wad / WAD:,.2f} of the fund's loss as deficit")
        if r.deleveraged:
            console.print(f"auto-deleveraged the fund in {r.deleveraged} market(s)")
        if once or r.taken or r.booked_wad or r.deleveraged:
            console.print(
                f"round {n + 1}: {len(r.taken)} take(s), {r.hedged} hedge(s), "
                f"{r.deleveraged} ADL(s), {r.offered} market(s) offered"
            )

    console.print(f"backstop {address} on chain {chain.chain_id}")
    beat = Heartbeat(
        0 if once else status_every_s, status, lambda s: console.print(f"backstop: {s}")
    )
    with beat:
        b.run(
            lambda: chain.w3.eth.block_number,
            poll_interval_s=poll_s,
            rounds=1 if once else None,
            on_round=report,
        )


# Anvil's accounts 0-3 hold the deploy's roles, 4 is the walkthrough's trader, the keeper the last.
BACKSTOP_INDEX = 5
