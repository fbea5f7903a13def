"""The `marginsync` command. Thin wiring: every command calls library functions tests call too."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console

from offchain.chain import Chain, checksum
from offchain.client import Client
from offchain.errors import ConfigError, MarginsyncError
from offchain.models import Deployment, SystemSpec
from offchain.settings import Settings

console = Console(stderr=False)
F = TypeVar("F", bound=Callable[..., Any])


def _settings(ctx: click.Context) -> Settings:
    obj: Settings = ctx.obj
    return obj


def _connect(ctx: click.Context) -> tuple[Chain, Deployment]:
    settings = _settings(ctx)
    chain = Chain.connect(settings)
    return chain, Deployment.load(settings.deployments_dir, chain.chain_id)


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
@click.option("-v", "--verbose", is_flag=True, help="Log what the keeper and engine do.")
@click.pass_context
def cli(
    ctx: click.Context, rpc_url: str | None, deployments_dir: Path | None, verbose: bool
) -> None:
    """marginsync: a synchronised margin engine for on-chain derivatives."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    overrides: dict[str, Any] = {}
    if rpc_url:
        overrides["rpc_url"] = rpc_url
    if deployments_dir:
        overrides["deployments_dir"] = deployments_dir
    ctx.obj = Settings(**overrides)


@cli.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="SystemSpec as JSON (defaults: ETH/BTC/SOL perps, USDC/WETH/WBTC collateral).",
)
@click.pass_context
def deploy(ctx: click.Context, config_path: Path | None) -> None:
    """Deploy and wire the contracts; record them in deployments/<chainId>.json."""
    from offchain.deploy import Roles, deploy_system

    settings = _settings(ctx)
    try:
        spec = (
            SystemSpec.model_validate_json(config_path.read_text()) if config_path else SystemSpec()
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{config_path}: {where}: {first['msg']}", "fix that field") from exc
    chain = Chain.connect(settings)
    d = deploy_system(
        chain,
        spec,
        Roles.from_accounts(chain.accounts),
        progress=lambda s: console.print(f"deploy: {s}"),
    )
    path = d.save(settings.deployments_dir)
    console.print(
        f"clearinghouse {d.clearinghouse}\noracle router {d.oracle_router}\nregistry      {path}"
    )


@cli.command()
@click.option("--mode", type=click.Choice(["walk", "crash"]), default="walk", show_default=True)
@click.option(
    "--asset", "assets", multiple=True, help="Oracle asset symbol(s) to drive (default: all)."
)
@click.option("--steps", type=click.IntRange(min=1), default=20, show_default=True)
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
    type=click.FloatRange(min=0),
    default=0.01,
    show_default=True,
    help="Walk: volatility per step.",
)
@click.option(
    "--drop",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.43,
    show_default=True,
    help="Crash: total fall (0.43 = -43%).",
)
@click.option("--seed", type=int, default=0, show_default=True)
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
) -> None:
    """Simulate oracle updates on the deployed mock Chainlink feeds."""
    from offchain.feeds import crash, random_walk

    chain, d = _connect(ctx)
    client = Client(chain, d)
    symbols = [d.asset(a).symbol for a in assets] or [a.symbol for a in d.assets]
    paths = {}
    for i, sym in enumerate(symbols):
        start = client.price_e18(sym) / 10**18
        paths[sym] = (
            random_walk(start, steps, vol_per_step=vol, seed=seed + i)
            if mode == "walk"
            else crash(start, steps, drop=drop, seed=seed + i)
        )
    for step in range(steps):
        for sym in symbols:
            client.set_price(sym, f"{paths[sym][step]:.8f}")
        line = "  ".join(f"{s} {paths[s][step]:,.2f}" for s in symbols)
        console.print(f"[{step + 1}/{steps}] {line}")
        if interval_s and step + 1 < steps:
            time.sleep(interval_s)


@cli.command()
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
) -> None:
    """Liquidate under-water accounts found from contract events."""
    import os

    from offchain.keeper import Keeper, KeeperConfig

    chain, d = _connect(ctx)
    key = os.environ.get(key_env)
    sender = chain.add_key(key) if key else checksum(address or chain.accounts[-1])
    # Keyed by the genesis block too: a restarted local chain reuses chain id and addresses, and
    # a journal of transactions on a dead chain must not be replayed on the new one.
    genesis = bytes(chain.w3.eth.get_block(0)["hash"]).hex()[:12]
    journal = (
        journal_path or Path(".marginsync") / f"keeper-{chain.chain_id}-{genesis}-{sender}.sqlite"
    )
    journal.parent.mkdir(parents=True, exist_ok=True)
    config = KeeperConfig(
        max_per_round=max_per_round, min_profit_usd=min_profit_usd, max_fee_gwei=max_fee_gwei
    )
    k = Keeper(Client(chain, d), sender, config=config, journal=journal)

    def report(n: int, done: list[Any]) -> None:
        for liq in done:
            console.print(
                f"liquidated {liq.account} market {liq.market_id}: "
                f"{liq.closed_size_wad / 1e18:g} @ {liq.price_e18 / 1e18:,.2f}, "
                f"reward ${liq.keeper_reward_wad / 1e18:,.2f}, gas {liq.gas_used:,}"
            )
        if once or done:
            console.print(
                f"round {n + 1}: {len(done)} liquidation(s); "
                f"{len(k.mirror.accounts)} accounts mirrored"
            )

    console.print(f"keeper {sender} on chain {chain.chain_id}")
    k.run(poll_interval_s=poll_s, rounds=1 if once else None, on_round=report)


def _lab_options(f: F) -> F:
    for option in reversed(
        (
            click.option("--seed", type=int, default=7, show_default=True),
            click.option("--traders", type=click.IntRange(1, 250), default=200, show_default=True),
            click.option("--steps", type=click.IntRange(min=4), default=40, show_default=True),
        )
    ):
        f = option(f)
    return f


@cli.command()
@click.option(
    "--scenario",
    type=click.Choice(["crash", "calm", "2020-03-12", "2022-11", "2025-10-10"]),
    default="crash",
    show_default=True,
)
@click.option("--sweep", type=click.Choice(["keeper-latency", "sync-interval"]), default=None)
@_lab_options
@click.pass_context
def lab(
    ctx: click.Context, scenario: str, sweep: str | None, seed: int, traders: int, steps: int
) -> None:
    """Replay a scenario on real Anvil chains under Gen 1, Gen 2 and Gen 3 rules; report."""
    from offchain.lab import run_lab

    run_lab(
        scenario=scenario,
        seed=seed,
        traders=traders,
        sweep=sweep,
        settings=_settings(ctx),
        console=console,
        steps=steps,
    )


@cli.command()
@_lab_options
@click.pass_context
def demo(ctx: click.Context, seed: int, traders: int, steps: int) -> None:
    """The lab's default: a 2020-03-12-sized crash, ~200 traders, all three generations."""
    from offchain.lab import run_lab

    run_lab(
        scenario="crash",
        seed=seed,
        traders=traders,
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
    help="SQLite outbox [default: .marginsync/outbox-<chainId>-<verifier>.sqlite].",
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
    "--risk-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="RiskConfig JSON [default: volatility margin on every underlying].",
)
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
    risk_config: Path | None,
) -> None:
    """Stream margin: recompute every account on each tick and post k-of-n signed attestations.

    Engine keys come from MARGINSYNC_ENGINE_KEYS (comma-separated hex) or
    MARGINSYNC_ENGINE_KEYSTORES + MARGINSYNC_ENGINE_KEYSTORE_PASSWORD, or --dev-keys on a local
    chain; transactions are sent from MARGINSYNC_PRIVATE_KEY. Without fresh agreeing prices, a
    working signer quorum or a clock in step with the chain it stops attesting and says why.
    """
    import asyncio

    from offchain.sync.engine import EngineConfig, build_engine, build_source

    settings = _settings(ctx)
    chain, d = _connect(ctx)
    config = EngineConfig(interval_s=interval_s, threshold_bps=threshold_bps)
    key = settings.private_key.get_secret_value() if settings.private_key else None
    eng = build_engine(
        chain,
        d,
        source=source,  # type: ignore[arg-type]
        dev_keys=dev_keys,
        outbox_path=outbox_path,
        config=config,
        submitter_key=key,
        risk_config_path=risk_config,
        progress=lambda line: console.print(f"engine: {line}"),
    )
    if metrics_port is not None:
        eng.metrics.serve(metrics_port)
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


@bench.command("all")
@click.option("--json-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def bench_all(json_dir: Path | None) -> None:
    """Every benchmark in turn."""
    from offchain.bench import gas, risk, sync

    gas.run(json_dir / "gas.json" if json_dir else None)
    risk.run(json_dir / "risk.json" if json_dir else None)
    sync.run(json_dir / "sync.json" if json_dir else None)


def _register_prover() -> None:
    from offchain.prove.cli import bench_prove, prove

    cli.add_command(prove)
    bench.add_command(bench_prove)


_register_prover()


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MarginsyncError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
