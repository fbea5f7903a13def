"""`marginsync prove` and `marginsync bench prove` (registered by offchain/cli.py)."""

from __future__ import annotations

import click
from rich.console import Console

from offchain.chain import Chain, checksum
from offchain.models import Deployment
from offchain.prove.layout import ACCOUNT, BATCH
from offchain.prove.onchain import (
    deploy_margin_proofs,
    prove_accounts,
    registered_model,
    set_proof_gate,
    submit,
)
from offchain.prove.prover import ZK_DIR, Prover
from offchain.prove.verifier import VerifyingKey, verify
from offchain.settings import Settings

console = Console()


@click.command()
@click.argument("accounts", nargs=-1, required=True)
@click.option("--submit/--no-submit", "do_submit", default=False, help="Record the proof on-chain.")
@click.pass_context
def prove(ctx: click.Context, accounts: tuple[str, ...], do_submit: bool) -> None:
    """Prove the margin requirement of ACCOUNTS (one: the account circuit, up to 8
    underlyings; several: batches of 32 accounts of up to 2 underlyings) at the oracle's prices,
    check the proof with the Python verifier, and optionally submit it (anyone may).

    On a deployment without a proof registry, deploys one first and turns proof-gated
    liquidation on (SPEC I34; owner key needed)."""
    settings: Settings = ctx.obj
    chain = Chain.connect(settings)
    deployment = Deployment.load(settings.deployments_dir, chain.chain_id)
    model = registered_model(chain, deployment)
    if deployment.margin_proofs is None:
        console.print("deploying the proof registry and the verifiers…")
        deployment = deploy_margin_proofs(chain, deployment, model, deployment.owner)
        set_proof_gate(chain, deployment, deployment.owner)
        deployment.save(settings.deployments_dir)
    registry_address = str(deployment.margin_proofs)
    addresses = [checksum(a) for a in accounts]
    shape = ACCOUNT if len(addresses) == 1 else BATCH
    sender = chain.accounts[0]
    with Prover() as prover:
        for start in range(0, len(addresses), shape.accounts):
            chunk = addresses[start : start + shape.accounts]
            submission = prove_accounts(chain, deployment, model, prover, shape, chunk)
            ok = verify(
                VerifyingKey.load(ZK_DIR / f"{shape.name}.vkey.json"),
                submission.proof.points,
                submission.proof.public,
            )
            for s in submission.statements:
                mm, im = s.mm_micro_usd / 1e6, s.im_micro_usd / 1e6
                console.print(f"{s.address}: MM {mm:,.6f} USD, IM {im:,.6f} USD")
            proof = submission.proof
            console.print(
                f"proof: witness {proof.witness_s:.2f} s, prove {proof.prove_s:.2f} s, "
                f"Python verifier: {'valid' if ok else 'INVALID'}"
            )
            if do_submit:
                receipt = submit(chain, registry_address, submission, sender)
                console.print(f"submitted: {receipt['gasUsed']:,} gas")
