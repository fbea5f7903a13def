"""`ape run deploy`: deploy and wire marginsync on the network ape is connected to.

Uses the same library as `marginsync deploy`; the registry lands in deployments/<chainId>.json.
"""

from __future__ import annotations

import click
from ape.cli import ConnectedProviderCommand, network_option

from offchain.chain import Chain
from offchain.chain.deploy import Roles, deploy_system
from offchain.models import SystemSpec
from offchain.settings import Settings


@click.command(cls=ConnectedProviderCommand)
@network_option()
def cli(provider) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(rpc_url=provider.http_uri)
    chain = Chain.connect(settings)
    d = deploy_system(chain, SystemSpec(), Roles.from_accounts(chain.accounts), progress=click.echo)
    path = d.save(settings.deployments_dir)
    click.echo(f"clearinghouse {d.clearinghouse}\noracle router {d.oracle_router}\nregistry {path}")
