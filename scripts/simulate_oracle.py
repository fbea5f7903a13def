"""`ape run simulate_oracle`: push a seeded random walk or a crash to the deployed mock feeds."""

from __future__ import annotations

import click
from ape.cli import ConnectedProviderCommand, network_option

from offchain.chain import Chain
from offchain.chain.client import Client
from offchain.feeds import crash, random_walk
from offchain.models import Deployment
from offchain.settings import Settings


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option("--mode", type=click.Choice(["walk", "crash"]), default="walk")
@click.option("--steps", type=click.IntRange(min=1), default=10)
@click.option("--drop", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.43)
@click.option("--seed", type=int, default=0)
def cli(provider, mode: str, steps: int, drop: float, seed: int) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(rpc_url=provider.http_uri)
    chain = Chain.connect(settings)
    client = Client(chain, Deployment.load(settings.deployments_dir, chain.chain_id))
    for i, asset in enumerate(client.d.assets):
        start = client.price_e18(asset.symbol) / 1e18
        path = (
            random_walk(start, steps, seed=seed + i)
            if mode == "walk"
            else crash(start, steps, drop=drop, seed=seed + i)
        )
        for price in path:
            client.set_price(asset.symbol, f"{price:.8f}")
        click.echo(f"{asset.symbol}: {start:,.2f} -> {path[-1]:,.2f} over {steps} updates")
