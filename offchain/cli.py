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
@click.pass_context
def keeper(
    ctx: click.Context, key_env: str, address: str | None, once: bool, poll_s: float
) -> None:
    """Liquidate under-water accounts found from contract events."""
    import os

    from offchain.keeper import Keeper

    chain, d = _connect(ctx)
    key = os.environ.get(key_env)
    sender = chain.add_key(key) if key else checksum(address or chain.accounts[-1])
    k = Keeper(Client(chain, d), sender)

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


@cli.command()
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--steps", type=click.IntRange(min=2), default=12, show_default=True)
@click.option("--traders", type=click.IntRange(min=1, max=200), default=8, show_default=True)
@click.pass_context
def demo(ctx: click.Context, seed: int, steps: int, traders: int) -> None:
    """Embedded Anvil: deploy, open leveraged positions, crash prices, liquidate, report."""
    from offchain.demo import run_demo

    run_demo(seed=seed, steps=steps, traders=traders, settings=_settings(ctx), console=console)


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


@bench.command("all")
@click.option("--json-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def bench_all(json_dir: Path | None) -> None:
    """Every benchmark in turn."""
    from offchain.bench import gas, risk

    gas.run(json_dir / "gas.json" if json_dir else None)
    risk.run(json_dir / "risk.json" if json_dir else None)


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
