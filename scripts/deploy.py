"""`ape run deploy`: deploy and wire marginsync on the network ape is connected to.

The same path as `marginsync deploy` (`offchain.ops.deployment`): on a chain that is not local
the engine signers come from MARGINSYNC_ENGINE_KEYS / _KEYSTORES. Without `--network`, ape starts
a throwaway Anvil for the script; its deployment dies with it, so the registry in deployments/
(which names the contracts of a real chain with the same id) is left alone.
"""

from __future__ import annotations

import click
from ape.cli import ConnectedProviderCommand, network_option

from offchain.chain import Chain
from offchain.errors import MarginsyncError
from offchain.models import SystemSpec
from offchain.ops.deployment import deploy, started_by_ape
from offchain.settings import Settings

RUNNING_NODE = "--network ethereum:local:http://127.0.0.1:8545"


@click.command(cls=ConnectedProviderCommand)
@network_option()
def cli(provider) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(rpc_url=provider.http_uri)
    try:
        chain = Chain.connect(settings)
        d = deploy(chain, SystemSpec(), progress=click.echo).deployment
    except MarginsyncError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"clearinghouse {d.clearinghouse}\noracle router {d.oracle_router}")
    if started_by_ape(provider):
        click.echo(
            "registry not written: this was a throwaway chain ape started for the script; "
            f"pass {RUNNING_NODE} to deploy to a running node"
        )
    else:
        click.echo(f"registry {d.save(settings.deployments_dir)}")
