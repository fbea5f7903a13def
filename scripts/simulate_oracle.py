"""`ape run simulate_oracle`: push a seeded random walk or a crash to the deployed mock feeds.

With `--network` naming a running node it drives the deployment recorded for that chain (by
`marginsync deploy` or `ape run deploy --network …`). Without it, ape starts a throwaway chain
for the script: the script deploys a fresh system there first (the registry is not written) and
drives that, so the example runs on its own.
"""

from __future__ import annotations

import click
from ape.cli import ConnectedProviderCommand, network_option

from offchain.chain import Chain
from offchain.chain.client import Client
from offchain.errors import MarginsyncError
from offchain.feeds import crash, random_walk
from offchain.models import Deployment, SystemSpec
from offchain.ops.deployment import deploy, started_by_ape
from offchain.settings import Settings


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option("--mode", type=click.Choice(["walk", "crash"]), default="walk")
@click.option("--steps", type=click.IntRange(1, 100_000), default=10)
@click.option("--drop", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.43)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0)
def cli(provider, mode: str, steps: int, drop: float, seed: int) -> None:  # type: ignore[no-untyped-def]
    try:
        chain = Chain.connect(Settings(rpc_url=provider.http_uri))
        if started_by_ape(provider):
            click.echo("a throwaway chain ape started: deploying a fresh system on it first")
            d = deploy(chain, SystemSpec()).deployment
        else:
            d = Deployment.load(Settings().deployments_dir, chain.chain_id)
        simulate(Client(chain, d), mode, steps, drop, seed)
    except MarginsyncError as exc:
        raise click.ClickException(str(exc)) from exc


def simulate(client: Client, mode: str, steps: int, drop: float, seed: int) -> None:
    for i, asset in enumerate(client.d.assets):
        start = client.price_e18(asset.symbol) / 1e18
        path = (
            random_walk(start, steps, seed=(seed + i) % 2**32)
            if mode == "walk"
            else crash(start, steps, drop=drop, seed=(seed + i) % 2**32)
        )
        for price in path:
            client.set_price(asset.symbol, f"{price:.8f}")
        click.echo(f"{asset.symbol}: {start:,.2f} -> {path[-1]:,.2f} over {steps} updates")
