"""Links deployed venues: a VenueLink on each venue's chain, configured with the whole venue
list, standing between the venue's clearinghouse and its attestation verifier.

The venues must already be deployed (offchain/chain/deploy.py) and each must have a
CommitteeRegistry with the same committee (offchain/committee/registry.py). After `deploy_link`
the clearinghouse's attestor is the venue's VenueLink: a certificate in force decides the
requirement, otherwise the venue's own attestation verifier does, as before (X6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from web3.contract import Contract

from offchain.chain.bindings import Chain
from offchain.errors import ConfigError
from offchain.link.messages import MAX_VENUES, Venue
from offchain.models import Deployment

ZERO_ADDRESS = "0x" + "00" * 20


def venue_list(
    deployments: Sequence[Deployment],
    links: Sequence[str],
    on: int,
    claim_receivers: Mapping[tuple[int, int], str] | None = None,
) -> list[Venue]:
    """The venue list as venue `on`'s VenueLink holds it. Only claim receivers differ between
    venues: venue i's receiver on venue j's chain is venue i's insurance fund there, which is
    `claim_receivers[(i, j)]` when given, venue i's own fund address on its own chain, and
    otherwise the same address string (on local chains every dev account exists everywhere)."""
    receivers = claim_receivers or {}
    return [
        Venue(
            d.chain_id,
            link,
            d.insurance_fund if i == on else receivers.get((i, on), d.insurance_fund),
        )
        for i, (d, link) in enumerate(zip(deployments, links, strict=True))
    ]


def deploy_link(
    venues: Sequence[tuple[Chain, Deployment]],
    registries: Sequence[str],
    owner: str | None = None,
    *,
    claim_receivers: Mapping[tuple[int, int], str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Deployment]:
    """Deploys and configures one VenueLink per venue (in link order) and makes it the venue's
    attestor. `registries[i]` is venue i's CommitteeRegistry; `owner` owns every link (default:
    each venue's owner, who must be able to send on its chain). Returns the deployments with
    `venue_link` set; the caller saves them."""
    if not 2 <= len(venues) <= MAX_VENUES:
        raise ConfigError(
            f"a link joins 2..{MAX_VENUES} venues, got {len(venues)}", "give more or fewer venues"
        )
    if len(registries) != len(venues):
        raise ConfigError(
            f"{len(registries)} committee registries for {len(venues)} venues",
            "give one CommitteeRegistry per venue, in venue order",
        )
    chain_ids = [d.chain_id for _, d in venues]
    if len(set(chain_ids)) != len(chain_ids):
        raise ConfigError(
            f"venues share a chain id ({chain_ids})", "start each venue's chain with its own id"
        )
    deployed: list[Contract] = []
    for chain, d in venues:
        progress(f"venue link on chain {d.chain_id}")
        quote = d.collaterals[0].token
        deployed.append(
            chain.deploy("VenueLink", d.clearinghouse, quote, owner or d.owner, sender=d.owner)
        )
    links = [str(c.address) for c in deployed]
    deployments = [d for _, d in venues]
    out = []
    for j, ((chain, d), link) in enumerate(zip(venues, deployed, strict=True)):
        progress(f"configure the link on chain {d.chain_id}")
        listed = [v.as_abi() for v in venue_list(deployments, links, j, claim_receivers)]
        inner = d.attestation_verifier or ZERO_ADDRESS
        chain.send(
            link.functions.configure(listed, registries[j], inner), owner or d.owner, "configure"
        )
        clearinghouse = chain.contract("Clearinghouse", d.clearinghouse)
        chain.send(clearinghouse.functions.setAttestor(link.address), d.owner, "set attestor")
        out.append(d.model_copy(update={"venue_link": link.address}))
    return out
