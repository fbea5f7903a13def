"""Linked venues for operators: several marginsync deployments, one per chain, joined by a link.

`marginsync deploy --venues N` deploys the system on each chain (the one deploy path,
`ops.deployment`), a CommitteeRegistry with the same committee on each, and a VenueLink per venue
(`link.deploy`); it writes each chain's registry (`deployments/<chainId>.json`, with `venue_link`)
and one link file (`deployments/link-<linkId8>.json`) that `keeper --link`, `link` and `pledge`
read: the venues in link order with their RPC endpoints, and the committee's size and threshold.

Without `--rpc` it starts one Anvil per venue (chain ids 31337, 31338, …; a block every second
as well as one per transaction) and leaves them running, as `anvil &` would for a single venue:
each node's pid is in the link file (`kill` it to stop it) and its log and spilled state in its
folder under `.marginsync/`.

`marginsync --venue I <command>` runs any single-venue command on venue I of the link file in
MARGINSYNC_LINK (`venue_url`).

The committee's development keys (`committee.bls.dev_secret_keys`) are derived from a public
string, so they are used only where nobody's money is at stake: on the chains this command starts
and on the local chain ids (31337, 1337).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from web3.contract import Contract

from offchain.attest import address_of
from offchain.chain import Chain, checksum
from offchain.chain.anvil import Anvil
from offchain.chain.deploy import dev_engine_keys
from offchain.errors import ConfigError
from offchain.link.deploy import deploy_link
from offchain.models import Deployment, Frozen, SystemSpec
from offchain.ops.deployment import deploy as deploy_system
from offchain.settings import Settings
from offchain.sync.keys import LOCAL_CHAIN_IDS, LOCAL_VENUE_CHAIN_IDS

# Venue i of a set of embedded local chains runs on chain LOCAL_CHAIN_ID + i.
LOCAL_CHAIN_ID = 31337
# VenueLink.MAX_VENUES; the CommitteeRegistry holds at most MAX_MEMBERS keys.
MAX_VENUES = 32
MAX_MEMBERS = 64
NODE_DIR = Path(".marginsync")
# The committee `deploy --venues` registers by default: any 3 of 5 certify.
COMMITTEE_SIZE = 5
COMMITTEE_THRESHOLD = 3
LINK_ENV = "MARGINSYNC_LINK"  # the link file `marginsync --venue N …` picks a venue of


class VenueRecord(Frozen):
    """One venue of a link, as the link file records it."""

    chain_id: int
    rpc_url: str
    venue_link: str
    committee_registry: str
    node_pid: int | None = None  # an Anvil `deploy --venues` started and left running
    node_home: str | None = None  # that node's log and spilled state


class LinkRecord(Frozen):
    """The link file: the venues in link order (venue index = place in `venues`)."""

    link_id: str
    venues: tuple[VenueRecord, ...]
    committee_size: int
    committee_threshold: int
    development_committee: bool  # the public development keys: local chains only

    @staticmethod
    def path_for(deployments_dir: Path, link_id: str) -> Path:
        return deployments_dir / f"link-{link_id.removeprefix('0x')[:8]}.json"

    def save(self, deployments_dir: Path) -> Path:
        deployments_dir.mkdir(parents=True, exist_ok=True)
        path = self.path_for(deployments_dir, self.link_id)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(path)  # atomic, as the registries are
        return path

    @classmethod
    def load(cls, path: Path) -> LinkRecord:
        if not path.is_file():
            raise ConfigError(
                f"no link file at {path}",
                "give the deployments/link-<id>.json that `marginsync deploy --venues N` wrote",
            )
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise ConfigError(
                f"{path} is not a link file ({where}: {exc.errors()[0]['msg']})",
                "give the deployments/link-<id>.json that `marginsync deploy --venues N` wrote",
            ) from exc

    def stop_hint(self) -> str:
        pids = [str(v.node_pid) for v in self.venues if v.node_pid]
        return f"kill {' '.join(pids)}" if pids else ""


@dataclass(frozen=True)
class Venue:
    """One connected venue: its chain, its registry entry and its place in the link file."""

    index: int
    chain: Chain
    deployment: Deployment
    record: VenueRecord


def open_venues(link: LinkRecord, settings: Settings, only: int | None = None) -> list[Venue]:
    """Every venue of `link` (or venue `only`), connected, its registry loaded and checked
    against the link file (a node restarted since the deploy keeps its chain id but lost the
    contracts)."""
    venues: list[Venue] = []
    for i, record in enumerate(link.venues):
        if only is not None and i != only:
            continue
        chain = Chain.connect(settings, record.rpc_url)
        if chain.chain_id != record.chain_id:
            raise ConfigError(
                f"venue {i}'s node at {record.rpc_url} is chain {chain.chain_id}, not "
                f"{record.chain_id} as the link file says",
                "point the link file at the right node, or deploy the venues again",
            )
        d = Deployment.load(settings.deployments_dir, record.chain_id)
        if (d.venue_link or "").lower() != record.venue_link.lower() or not chain.w3.eth.get_code(
            checksum(record.venue_link)
        ):
            raise ConfigError(
                f"chain {record.chain_id} has no VenueLink at {record.venue_link}, where the link "
                "file and the chain's registry say it is (was the node restarted?)",
                "run `marginsync deploy --venues N` again",
            )
        venues.append(Venue(i, chain, d, record))
    return venues


def venue_index(link: LinkRecord, ref: str, option: str) -> int:
    """A venue named by its index in the link or by its chain id."""
    for i, v in enumerate(link.venues):
        if ref.strip() in (str(i), str(v.chain_id)):
            return i
    named = ", ".join(f"{i} (chain {v.chain_id})" for i, v in enumerate(link.venues))
    raise ConfigError(f"{option} {ref!r} is not a venue of the link", f"use one of: {named}")


def venue_url(ref: str, env: Mapping[str, str] | None = None) -> str:
    """The RPC endpoint of venue `ref` (index or chain id) of the link file in MARGINSYNC_LINK:
    `marginsync --venue 1 trade …` runs a single-venue command there."""
    env = os.environ if env is None else env
    path = env.get(LINK_ENV, "").strip()
    if not path:
        raise ConfigError(
            f"--venue {ref} names a venue of a link, and {LINK_ENV} names no link file",
            f"export {LINK_ENV}=deployments/link-<id>.json (deploy --venues wrote it), "
            "or use --rpc-url",
        )
    link = LinkRecord.load(Path(path))
    return link.venues[venue_index(link, ref, "--venue")].rpc_url


# ---------------------------------------------------------------------------- deploying


@dataclass(frozen=True)
class Committee:
    size: int
    threshold: int

    @classmethod
    def given(cls, size: int | None, threshold: int | None) -> Committee:
        """The committee asked for, with the defaults for what was not."""
        n = COMMITTEE_SIZE if size is None else size
        return cls(n, min(COMMITTEE_THRESHOLD, n) if threshold is None else threshold)

    def check(self) -> None:
        if not 1 <= self.size <= MAX_MEMBERS:
            raise ConfigError(
                f"--committee {self.size}: a committee has 1 to {MAX_MEMBERS} members",
                f"give --committee between 1 and {MAX_MEMBERS}",
            )
        if not 1 <= self.threshold <= self.size:
            raise ConfigError(
                f"--committee-threshold {self.threshold} with a committee of {self.size}",
                f"give a threshold between 1 and {self.size}",
            )


def check_venue_count(venues: int, rpc_urls: Sequence[str]) -> None:
    if not 2 <= venues <= MAX_VENUES:
        raise ConfigError(
            f"--venues {venues}: a link joins 2 to {MAX_VENUES} venues",
            f"give --venues between 2 and {MAX_VENUES}",
        )
    if rpc_urls and len(rpc_urls) != venues:
        raise ConfigError(
            f"--venues {venues} with {len(rpc_urls)} --rpc URL(s)",
            f"give one --rpc per venue ({venues}), or none to start local chains",
        )


@dataclass(frozen=True)
class LinkedVenues:
    """What `deploy_venues` did: the link file (saved) and each venue's registry entry."""

    link: LinkRecord
    link_path: Path
    deployments: list[Deployment]
    registry_paths: list[Path]


def deploy_venues(
    settings: Settings,
    spec: SystemSpec,
    *,
    venues: int,
    rpc_urls: Sequence[str] = (),
    committee: Committee,
    engine_signers: Sequence[str] = (),
    engine_threshold: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> LinkedVenues:
    """Deploys `venues` linked venues, on the chains at `rpc_urls` or on Anvils it starts (left
    running once everything is deployed; stopped if anything fails)."""
    # The committee's module brings py-ecc: imported here, not by every `marginsync` command.
    from offchain.committee.bls import dev_secret_keys
    from offchain.committee.registry import Registry

    check_venue_count(venues, rpc_urls)
    committee.check()
    with ExitStack() as nodes:
        started = [] if rpc_urls else _start_local(nodes, venues, progress)
        urls = list(rpc_urls) or [n.url for n in started]
        chains = [Chain.connect(settings, url) for url in urls]
        _check_distinct(chains, urls)
        if not started:
            _check_local(chains)
        dev_signers = _dev_engine_signers(spec) if started and not engine_signers else ()
        deployed: list[tuple[Chain, Deployment]] = []
        registries: list[str] = []
        members = dev_secret_keys(committee.size)
        for chain in chains:
            say = _prefixed(progress, chain.chain_id)
            d = deploy_system(
                chain,
                spec,
                engine_signers=list(engine_signers or dev_signers),
                threshold=engine_threshold,
                progress=say,
            ).deployment
            say(f"committee registry ({committee.threshold} of {committee.size})")
            registries.append(Registry.deploy(chain, d.owner, members, committee.threshold).address)
            deployed.append((chain, d))
        linked = deploy_link(deployed, registries, progress=progress)
        pids = [n.detach() for n in started]
    records = tuple(
        VenueRecord(
            chain_id=d.chain_id,
            rpc_url=url,
            venue_link=str(d.venue_link),
            committee_registry=registry,
            node_pid=pids[i] if started else None,
            node_home=str(started[i].home) if started else None,
        )
        for i, (d, url, registry) in enumerate(zip(linked, urls, registries, strict=True))
    )
    link = LinkRecord(
        link_id="0x" + bytes(_link_contract(chains[0], linked[0]).functions.linkId().call()).hex(),
        venues=records,
        committee_size=committee.size,
        committee_threshold=committee.threshold,
        development_committee=True,
    )
    paths = [d.save(settings.deployments_dir) for d in linked]
    return LinkedVenues(link, link.save(settings.deployments_dir), linked, paths)


def _start_local(stack: ExitStack, count: int, progress: Callable[[str], None]) -> list[Anvil]:
    """`count` Anvils with distinct chain ids, stopped by `stack` unless detached first."""
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    nodes: list[Anvil] = []
    for i in range(count):
        chain_id = LOCAL_CHAIN_ID + i
        home = Path(tempfile.mkdtemp(prefix=f"anvil-{chain_id}-", dir=NODE_DIR)).resolve()
        # A block every second as well as one per transaction: each chain's clock keeps up
        # with the wall clock as a live chain's does, so a certificate issued now is not from
        # the future on an idle venue (nor older than the link's max age at its last block).
        node = Anvil(chain_id=chain_id, home=home, block_time_s=1, extra_args=("--mixed-mining",))
        nodes.append(stack.enter_context(node))
        progress(f"chain {chain_id} started on {nodes[-1].url}")
    return nodes


def _check_distinct(chains: Sequence[Chain], urls: Sequence[str]) -> None:
    seen: dict[int, str] = {}
    for chain, url in zip(chains, urls, strict=True):
        if chain.chain_id in seen:
            raise ConfigError(
                f"{seen[chain.chain_id]} and {url} are both chain {chain.chain_id}",
                "each venue needs its own chain: start each node with its own chain id "
                "(anvil --chain-id N)",
            )
        seen[chain.chain_id] = url


def _check_local(chains: Sequence[Chain]) -> None:
    for chain in chains:
        if chain.chain_id not in LOCAL_CHAIN_IDS:
            raise ConfigError(
                f"chain {chain.chain_id} is not a local chain, and the development committee "
                "keys are public",
                "leave out --rpc to link local chains this command starts, or use nodes with "
                f"local chain ids (1337, {LOCAL_VENUE_CHAIN_IDS[0]}-{LOCAL_VENUE_CHAIN_IDS[-1]})",
            )


def _dev_engine_signers(spec: SystemSpec) -> list[str]:
    """The development engine signers' addresses, for the chains this command started (local
    by construction)."""
    if spec.attestation is None:
        return []
    return [address_of(bytes.fromhex(k[2:])) for k in dev_engine_keys(spec.attestation.signers)]


def _prefixed(progress: Callable[[str], None], chain_id: int) -> Callable[[str], None]:
    return lambda line: progress(f"chain {chain_id}: {line}")


def _link_contract(chain: Chain, d: Deployment) -> Contract:
    return chain.contract("VenueLink", str(d.venue_link))
