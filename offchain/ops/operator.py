"""The operator's commands: `deploy` (one venue, or N linked venues) and `keeper` (one venue, or
every venue of a link). `offchain.cli` registers them; each is thin wiring over
`ops.deployment`, `ops.venues` and `keeper`."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console

from offchain.chain import Chain, checksum
from offchain.chain.client import Client, connect
from offchain.chain.journal import default_journal
from offchain.errors import ConfigError
from offchain.models import SystemSpec
from offchain.ops.funds import KEEPER_GAS, require_funds
from offchain.ops.heartbeat import Heartbeat, KeeperStatus
from offchain.settings import Settings

console = Console(soft_wrap=True)
STATUS_EVERY = click.option(
    "--status-every",
    "status_every_s",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds between status lines (0: none).",
)
# The committee `deploy --venues` registers by default: any 3 of 5 certify.
COMMITTEE_SIZE = 5
COMMITTEE_THRESHOLD = 3


def status_line(service: str, line: str) -> None:
    console.print(f"{service}: {line}")  # one line per beat, for log tools


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="SystemSpec as JSON (defaults: ETH/BTC/SOL perps, USDC/WETH/WBTC collateral).",
)
@click.option(
    "--engine-signer",
    "engine_signers",
    multiple=True,
    metavar="ADDRESS",
    help="An engine signer address to register (repeat per signer) [default: the addresses of "
    "MARGINSYNC_ENGINE_KEYS / _KEYSTORES; on a local chain the public development keys].",
)
@click.option(
    "--threshold", type=click.IntRange(1, 32), default=None, help="Signatures per attestation, k."
)
@click.option(
    "--venues",
    type=int,
    default=None,
    help="Deploy N >= 2 venues, one per chain, joined by a link (VenueLink + BLS committee).",
)
@click.option(
    "--rpc",
    "rpc_urls",
    multiple=True,
    metavar="URL",
    help="With --venues: one node per venue, in venue order [default: start N local Anvils "
    "with chain ids 31337, 31338, ..., left running].",
)
@click.option(
    "--committee",
    "committee_size",
    type=int,
    default=None,
    help=f"With --venues: committee members, n [default: {COMMITTEE_SIZE}; development keys].",
)
@click.option(
    "--committee-threshold",
    type=int,
    default=None,
    help=f"With --venues: members that must sign a certificate, k [default: "
    f"{COMMITTEE_THRESHOLD}].",
)
@click.pass_context
def deploy(
    ctx: click.Context,
    config_path: Path | None,
    engine_signers: tuple[str, ...],
    threshold: int | None,
    venues: int | None,
    rpc_urls: tuple[str, ...],
    committee_size: int | None,
    committee_threshold: int | None,
) -> None:
    """Deploy and wire the contracts; record them in deployments/<chainId>.json.

    With --venues N: N venues on N chains, each with the same BLS committee, joined by a link;
    also writes deployments/link-<linkId>.json, which `keeper --link` reads."""
    from offchain.ops.deployment import deploy as deploy_operator

    settings: Settings = ctx.obj
    spec = _spec(config_path)
    linked_only = {"--rpc": rpc_urls, "--committee": committee_size}
    linked_only["--committee-threshold"] = committee_threshold
    if venues is None:
        given = [name for name, value in linked_only.items() if value]
        if given:
            raise ConfigError(f"{given[0]} is for linked venues", "add --venues N (N >= 2)")
        _deploy_one(
            settings,
            deploy_operator(
                Chain.connect(settings),
                spec,
                engine_signers=engine_signers,
                threshold=threshold,
                progress=lambda s: console.print(f"deploy: {s}"),
            ),
        )
        return
    _deploy_linked(
        settings,
        spec,
        venues,
        rpc_urls,
        committee_size or COMMITTEE_SIZE,
        committee_threshold or min(COMMITTEE_THRESHOLD, committee_size or COMMITTEE_SIZE),
        engine_signers,
        threshold,
    )


def _spec(config_path: Path | None) -> SystemSpec:
    try:
        return (
            SystemSpec.model_validate_json(config_path.read_text()) if config_path else SystemSpec()
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{config_path}: {where}: {first['msg']}", "fix that field") from exc


def _deploy_one(settings: Settings, done: Any) -> None:
    d = done.deployment
    path = d.save(settings.deployments_dir)
    console.print(
        f"clearinghouse {d.clearinghouse}\noracle router {d.oracle_router}\nregistry      {path}\n"
        f"{done.signers_line()}"
    )


def _deploy_linked(
    settings: Settings,
    spec: SystemSpec,
    venues: int,
    rpc_urls: tuple[str, ...],
    committee_size: int,
    committee_threshold: int,
    engine_signers: tuple[str, ...],
    threshold: int | None,
) -> None:
    from offchain.ops.venues import Committee, deploy_venues

    done = deploy_venues(
        settings,
        spec,
        venues=venues,
        rpc_urls=rpc_urls,
        committee=Committee(committee_size, committee_threshold),
        engine_signers=engine_signers,
        engine_threshold=threshold,
        progress=lambda s: console.print(f"deploy: {s}"),
    )
    for i, (v, d, path) in enumerate(
        zip(done.link.venues, done.deployments, done.registry_paths, strict=True)
    ):
        console.print(
            f"venue {i}: chain {v.chain_id} at {v.rpc_url}, clearinghouse {d.clearinghouse}, "
            f"venue link {v.venue_link}, registry {path}"
        )
    link = done.link
    console.print(
        f"link {link.link_id}: {len(link.venues)} venues, committee {link.committee_threshold} "
        f"of {link.committee_size} (public development keys, local chains only), "
        f"link file {done.link_path}"
    )
    if link.stop_hint():
        console.print(f"the chains keep running; stop them with `{link.stop_hint()}`")


@click.command()
@click.option(
    "--key-env",
    default="MARGINSYNC_PRIVATE_KEY",
    show_default=True,
    help="Variable holding the keeper's key; unset on Anvil: an unlocked account.",
)
@click.option("--address", default=None, help="Unlocked node account to send from (local chains).")
@click.option("--once", is_flag=True, help="One round, then exit.")
@click.option("--poll", "poll_s", type=click.FloatRange(min=0.05), default=1.0, show_default=True)
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite write-ahead journal [default: .marginsync/keeper-<chain>-<address>.sqlite].",
)
@click.option(
    "--max-per-round",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Liquidations sent per block, deepest shortfall first (staged, not a stampede).",
)
@click.option("--min-profit-usd", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--max-fee-gwei", type=click.FloatRange(min=0, min_open=True), default=5_000.0)
@click.option(
    "--link",
    "link_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keep every venue of this link file (deploy --venues wrote it), one keeper loop each.",
)
@STATUS_EVERY
@click.pass_context
def keeper(
    ctx: click.Context,
    key_env: str,
    address: str | None,
    once: bool,
    poll_s: float,
    journal_path: Path | None,
    max_per_round: int,
    min_profit_usd: float,
    max_fee_gwei: float,
    link_path: Path | None,
    status_every_s: float,
) -> None:
    """Liquidate under-water accounts found from contract events (on one venue, or on every
    venue of --link, each by the requirement in force there)."""
    from offchain.keeper import Keeper, KeeperConfig, Liquidation, run_keepers

    settings: Settings = ctx.obj
    if link_path and journal_path:
        raise ConfigError(
            "--journal names one file, and each venue of --link needs its own",
            "leave out --journal: each venue's keeper journals to .marginsync/keeper-<chain>-…",
        )
    config = KeeperConfig(
        max_per_round=max_per_round, min_profit_usd=min_profit_usd, max_fee_gwei=max_fee_gwei
    )
    if link_path:
        from offchain.ops.venues import LinkRecord, open_venues

        targets = [
            (v.chain, v.deployment) for v in open_venues(LinkRecord.load(link_path), settings)
        ]
    else:
        targets = [connect(settings)]
    keepers = []
    for chain, d in targets:
        sender = _keeper_sender(chain, key_env, address)
        journal = journal_path or default_journal(
            "keeper", chain.chain_id, chain.genesis_tag, sender
        )
        journal.parent.mkdir(parents=True, exist_ok=True)
        keepers.append(Keeper(Client(chain, d), sender, config=config, journal=journal))
        console.print(f"keeper {sender} on chain {chain.chain_id}")
    statuses = {id(k): KeeperStatus(k.mirror, _head(k.chain)) for k in keepers}
    where = len(keepers) > 1

    def report(k: Keeper, n: int, done: list[Liquidation]) -> None:
        statuses[id(k)].on_round(done)
        on = f" on chain {k.chain.chain_id}" if where else ""
        for liq in done:
            console.print(
                f"liquidated {liq.account} market {liq.market_id}{on}: "
                f"{liq.closed_size_wad / 1e18:g} @ {liq.price_e18 / 1e18:,.2f}, "
                f"reward ${liq.keeper_reward_wad / 1e18:,.2f}, gas {liq.gas_used:,}"
            )
        if once or done:
            console.print(
                f"round {n + 1}{on}: {len(done)} liquidation(s); "
                f"{len(k.mirror.accounts)} accounts mirrored"
            )

    def line() -> str:
        if not where:
            return statuses[id(keepers[0])]()
        return "; ".join(f"chain {k.chain.chain_id}: {statuses[id(k)]()}" for k in keepers)

    beat = Heartbeat(0 if once else status_every_s, line, lambda s: status_line("keeper", s))
    with beat:
        run_keepers(keepers, poll_interval_s=poll_s, rounds=1 if once else None, on_round=report)


def _head(chain: Chain) -> Callable[[], int]:
    return lambda: int(chain.w3.eth.block_number)


def _keeper_sender(chain: Chain, key_env: str, address: str | None) -> str:
    key = os.environ.get(key_env)
    if not (key or address or chain.accounts):
        raise ConfigError(
            f"no keeper key: {key_env} is unset and the node of chain {chain.chain_id} unlocks "
            "no account",
            f"set {key_env} to the keeper's funded key",
        )
    sender = chain.add_key(key) if key else checksum(address or chain.accounts[-1])
    require_funds(chain, sender, "keeper", KEEPER_GAS, key_env)
    return sender


COMMANDS = (deploy, keeper)
