"""The `marginsync` command. Thin wiring: every command calls library functions tests call too."""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import requests
from rich.console import Console

from offchain.chain import Chain
from offchain.chain.client import Client, connect
from offchain.errors import ConfigError, MarginsyncError
from offchain.models import Deployment
from offchain.ops.commands import COMMANDS
from offchain.ops.funds import ENGINE_GAS, require_funds
from offchain.ops.heartbeat import EngineStatus, Heartbeat
from offchain.ops.operator import COMMANDS as OPERATOR_COMMANDS
from offchain.ops.operator import STATUS_EVERY, status_line
from offchain.ops.pledges import COMMANDS as PLEDGE_COMMANDS
from offchain.ops.prices import current_price_usd, parse_starts
from offchain.prove.cli import prove as prove_command
from offchain.settings import Settings

console = Console(stderr=False)
F = TypeVar("F", bound=Callable[..., Any])
# numpy seeds are unsigned 32-bit; anything else is a user error, not a traceback.
SEED = click.IntRange(0, 2**32 - 1)
MAX_FEED_STEPS = 100_000


def _settings(ctx: click.Context) -> Settings:
    obj: Settings = ctx.obj
    return obj


def _connect(ctx: click.Context) -> tuple[Chain, Deployment]:
    return connect(_settings(ctx))


@click.group()
@click.option(
    "--rpc-url", envvar="MARGINSYNC_RPC_URL", default=None, help="JSON-RPC endpoint of the chain."
)
@click.option(
    "--deployments-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where deployments/<chainId>.json live.",
)
@click.option(
    "--venue",
    "venue_ref",
    envvar="MARGINSYNC_VENUE",
    default=None,
    metavar="INDEX|CHAIN_ID",
    help="Run on this venue of the link file in MARGINSYNC_LINK (instead of --rpc-url).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what the keeper and engine do.")
@click.pass_context
def cli(
    ctx: click.Context,
    rpc_url: str | None,
    deployments_dir: Path | None,
    venue_ref: str | None,
    verbose: bool,
) -> None:
    """marginsync: a synchronised margin engine for on-chain derivatives."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    overrides: dict[str, Any] = {}
    if rpc_url and venue_ref:
        raise ConfigError("--rpc-url and --venue both name the node", "give one of them")
    if rpc_url:
        overrides["rpc_url"] = rpc_url
    if venue_ref:
        from offchain.ops.venues import venue_url

        overrides["rpc_url"] = venue_url(venue_ref)
    if deployments_dir:
        overrides["deployments_dir"] = deployments_dir
    ctx.obj = Settings(**overrides)


@cli.command()
@click.option("--mode", type=click.Choice(["walk", "crash"]), default="walk", show_default=True)
@click.option(
    "--asset", "assets", multiple=True, help="Oracle asset symbol(s) to drive (default: all)."
)
@click.option("--steps", type=click.IntRange(1, MAX_FEED_STEPS), default=20, show_default=True)
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between updates.",
)
@click.option(
    "--vol",
    type=click.FloatRange(0, 0.5),
    default=0.01,
    show_default=True,
    help="Walk: volatility per step (0.01 = 1%).",
)
@click.option(
    "--drop",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.43,
    show_default=True,
    help="Crash: total fall (0.43 = -43%).",
)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option(
    "--start",
    "starts",
    multiple=True,
    metavar="SYMBOL=USD",
    help="Start the path here instead of at the oracle's current price (e.g. ETH=3000).",
)
@click.pass_context
def feed(
    ctx: click.Context,
    mode: str,
    assets: tuple[str, ...],
    steps: int,
    interval_s: float,
    vol: float,
    drop: float,
    seed: int,
    starts: tuple[str, ...],
) -> None:
    """Simulate oracle updates on the deployed mock Chainlink feeds."""
    from offchain.feeds import crash, random_walk

    chain, d = _connect(ctx)
    client = Client(chain, d)
    symbols = [d.asset(a).symbol for a in assets] or [a.symbol for a in d.assets]
    given = parse_starts(starts, d)
    paths = {}
    for i, sym in enumerate(symbols):
        start = given.get(sym) or current_price_usd(client, sym)
        path = (
            random_walk(start, steps, vol_per_step=vol, seed=(seed + i) % 2**32)
            if mode == "walk"
            else crash(start, steps, drop=drop, seed=(seed + i) % 2**32)
        )
        tick = 10.0 ** -d.asset(sym).feed_decimals
        if not (path >= tick).all():
            raise ConfigError(
                f"the {mode} path for {sym} falls to 0 at the feed's {d.asset(sym).feed_decimals} "
                "decimals, which the oracle would refuse",
                "use a smaller --vol, fewer --steps or a smaller --drop",
            )
        paths[sym] = path
    for step in range(steps):
        for sym in symbols:
            client.set_price(sym, f"{paths[sym][step]:.8f}")
        line = "  ".join(f"{s} {paths[s][step]:,.2f}" for s in symbols)
        console.print(f"[{step + 1}/{steps}] {line}")
        if interval_s and step + 1 < steps:
            time.sleep(interval_s)


LAB_TRADERS = 200
VENUES_TRADERS = 60
VENUES = "Split the books across N venues (default 3): isolated vs linked, not the generations."


def _lab_options(f: F) -> F:
    for option in reversed(
        (
            click.option("--seed", type=SEED, default=7, show_default=True),
            click.option(
                "--traders",
                type=click.IntRange(1, 250),
                default=None,
                help="[default: 200; 60 with --venues, whose linked run certifies every book "
                "on every venue at every update]",
            ),
            click.option("--steps", type=click.IntRange(min=4), default=40, show_default=True),
        )
    ):
        f = option(f)
    return f


@cli.command()
@click.option(
    "--scenario",
    type=click.Choice(
        ["crash", "calm", "2020-03-12", "2022-11", "2025-10-10", "crowded-long", "basis-blowout"]
    ),
    default="crash",
    show_default=True,
)
@click.option("--sweep", type=click.Choice(["keeper-latency", "sync-interval"]), default=None)
@click.option("--venues", type=click.IntRange(2, 8), is_flag=False, flag_value=3, help=VENUES)
@_lab_options
@click.pass_context
def lab(
    ctx: click.Context, /, scenario: str, sweep: str | None, venues: int | None, **kw: int
) -> None:
    """Replay a scenario on real Anvil chains under Gen 1, Gen 2 and Gen 3 rules; report."""
    from offchain.lab import run_lab, run_venues

    if venues is not None:
        kw["traders"] = kw["traders"] or VENUES_TRADERS
        run_venues(scenario, sweep, venues, settings=_settings(ctx), console=console, **kw)
        return
    kw["traders"] = kw["traders"] or LAB_TRADERS
    run_lab(scenario=scenario, sweep=sweep, settings=_settings(ctx), console=console, **kw)


@cli.command()
@_lab_options
@click.pass_context
def demo(ctx: click.Context, seed: int, traders: int | None, steps: int) -> None:
    """The lab's default: a 2020-03-12-sized crash, ~200 traders, all three generations."""
    from offchain.lab import run_lab

    run_lab(
        scenario="crash",
        seed=seed,
        traders=traders or LAB_TRADERS,
        sweep=None,
        settings=_settings(ctx),
        console=console,
        steps=steps,
    )


@cli.command()
@click.option("--once", is_flag=True, help="One tick, one pass, wait for receipts, then exit.")
@click.option(
    "--source",
    type=click.Choice(["sim", "ws", "chain"]),
    default="chain",
    show_default=True,
    help="Prices: chain = poll the deployed (mock) Chainlink feeds; sim = seeded simulator "
    "(5 sources); ws = JSON ticks from --ws-url.",
)
@click.option("--ws-url", default=None, help="Websocket of JSON ticks (with --source ws).")
@click.option(
    "--dev-keys", is_flag=True, help="Public development engine keys (local chains only)."
)
@click.option(
    "--outbox",
    "outbox_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite outbox [default: .marginsync/outbox-<chainId>-<genesis>-<verifier>.sqlite].",
)
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), default=None, help="Serve /metrics here."
)
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between feed polls / simulated ticks; a pass runs at least this often.",
)
@click.option(
    "--threshold-bps",
    type=click.FloatRange(min=0),
    default=500.0,
    show_default=True,
    help="Attest an account when its requirement moves by more than this (relative).",
)
@click.option(
    "--max-outage",
    "max_outage_s",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Seconds to keep retrying (with backoff) while the node is unreachable, then exit.",
)
@click.option(
    "--risk-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="RiskConfig JSON [default: volatility margin on every underlying].",
)
@click.option("--prove", is_flag=True, help="Also prove what it attests (MARGINSYNC_PROVER_KEY).")
@STATUS_EVERY
@click.pass_context
def engine(
    ctx: click.Context,
    once: bool,
    source: str,
    ws_url: str | None,
    dev_keys: bool,
    outbox_path: Path | None,
    metrics_port: int | None,
    interval_s: float,
    threshold_bps: float,
    max_outage_s: float,
    risk_config: Path | None,
    prove: bool,
    status_every_s: float,
) -> None:
    """Stream margin: recompute every account on each tick and post k-of-n signed attestations.

    Engine keys come from MARGINSYNC_ENGINE_KEYS (comma-separated hex) or
    MARGINSYNC_ENGINE_KEYSTORES + MARGINSYNC_ENGINE_KEYSTORE_PASSWORD, or --dev-keys on a local
    chain; transactions are sent from MARGINSYNC_PRIVATE_KEY. Without fresh agreeing prices, a
    working signer quorum or a clock in step with the chain it stops attesting and says why.
    """
    import asyncio

    from offchain.sync import EngineConfig, build_engine, build_source

    settings = _settings(ctx)
    chain, d = _connect(ctx)
    config = EngineConfig(
        interval_s=interval_s, threshold_bps=threshold_bps, max_outage_s=max_outage_s
    )
    key = settings.private_key.get_secret_value() if settings.private_key else None
    if key:  # Chain.connect put the key first among its accounts
        require_funds(
            chain, chain.accounts[0], "engine submitter", ENGINE_GAS, "MARGINSYNC_PRIVATE_KEY"
        )
    eng = build_engine(
        chain,
        d,
        source=source,  # type: ignore[arg-type]
        dev_keys=dev_keys,
        outbox_path=outbox_path,
        config=config,
        submitter_key=key,
        risk_config_path=risk_config,
        prove=prove,
        prover_key=settings.prover_key.get_secret_value() if settings.prover_key else None,
        progress=lambda line: console.print(f"engine: {line}"),
    )
    if metrics_port is not None:
        try:
            eng.metrics.serve(metrics_port)
        except OSError as exc:
            eng.close()
            raise ConfigError(
                f"cannot serve metrics on port {metrics_port} ({exc.strerror})",
                "pick a free --metrics-port or stop what listens there",
            ) from exc
        console.print(f"engine: metrics on http://127.0.0.1:{metrics_port}/metrics")
    ticks = build_source(
        source,  # type: ignore[arg-type]
        chain,
        d,
        interval_s=interval_s,
        ws_url=ws_url,
        once=once,
    )
    console.print(
        f"engine: chain {chain.chain_id}, verifier {d.attestation_verifier}, source {source}, "
        f"outbox {eng.outbox.path}"
    )
    try:
        if once:
            report = asyncio.run(eng.once(ticks, stop_when_accepted=source == "ws"))
            console.print(f"engine: done: {report.summary()}")
        else:
            status = EngineStatus(eng.metrics.registry, lambda: chain.w3.eth.block_number)
            with Heartbeat(status_every_s, status, lambda s: status_line("engine", s)):
                asyncio.run(eng.run(ticks))
    finally:
        eng.close()


@cli.group()
def bench() -> None:
    """Benchmarks that print figures (gas, risk)."""


@bench.command("gas")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_gas(json_path: Path | None) -> None:
    """Gas of deposit, withdraw, a settled trade and liquidations with 1 and 8 positions."""
    from offchain.bench.gas import run

    run(json_path)


@bench.command("risk")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_risk(json_path: Path | None) -> None:
    """Risk engine speed: standard/volatility, portfolio and Monte-Carlo margin."""
    from offchain.bench.risk import run

    run(json_path)


@bench.command("sync")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_sync(json_path: Path | None) -> None:
    """Engine: tick-to-chain latency, gas per attested account, throughput, Gen-2 health gas."""
    from offchain.bench.sync import run

    run(json_path)


@bench.command("quorum")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_quorum(json_path: Path | None) -> None:
    """Gas of one quorum check: ECDSA k-of-n against one BLS aggregate certificate."""
    from offchain.bench.quorum import run

    run(json_path)


@bench.command("link")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--accounts", type=click.IntRange(1, 5_000), default=200, show_default=True)
@click.option("--venues", type=click.IntRange(2, 8), default=3, show_default=True)
@click.option("--steps", type=click.IntRange(1, 1_000), default=20, show_default=True)
def bench_link(json_path: Path | None, accounts: int, venues: int, steps: int) -> None:
    """Certificate lag and gas across linked venues (books split across venues)."""
    from offchain.bench.link import run

    run(json_path, accounts=accounts, venues=venues, steps=steps)


@bench.command("prove")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def bench_prove(json_path: Path | None) -> None:
    """Prover: constraints, proving time, verification gas (1 and 8 positions, a batch)."""
    from offchain.bench.prove import run

    run(json_path)


@bench.command("all")
@click.option("--json-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def bench_all(json_dir: Path | None) -> None:
    """Every benchmark in turn."""
    from offchain.bench import gas, quorum, risk, sync

    gas.run(json_dir / "gas.json" if json_dir else None)
    risk.run(json_dir / "risk.json" if json_dir else None)
    sync.run(json_dir / "sync.json" if json_dir else None)
    quorum.run(json_dir / "quorum.json" if json_dir else None)


for _command in (*OPERATOR_COMMANDS, *PLEDGE_COMMANDS, *COMMANDS, prove_command):
    cli.add_command(_command)


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C: context managers stop the Anvil nodes, journals close.
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MarginsyncError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        sys.exit(1)
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        # The node went away mid-command (the connection check at start passed).
        console.print(
            f"[red]error:[/] lost the connection to the Ethereum node ({type(exc).__name__}). "
            "Restart it, or check --rpc-url / MARGINSYNC_RPC_URL, and run the command again",
            soft_wrap=True,
        )
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
