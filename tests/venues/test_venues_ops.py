"""Linked venues for operators and traders, as users run them: `marginsync deploy --venues N`
(real Anvils it starts and leaves running, distinct chain ids), `keeper --link`, `pledge`, and
every mistake a user can make ending in one line with its cause and fix."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import fund, rpc, send_fast, usdc
from linked_venues import Linked
from service import Service, run

from offchain.chain import Chain, checksum
from offchain.chain.anvil import Anvil
from offchain.chain.client import wad
from offchain.cli import main
from offchain.committee.bls import dev_secret_keys
from offchain.committee.registry import Registry
from offchain.keeper import Keeper, run_keepers
from offchain.link.messages import link_id
from offchain.models import Deployment
from offchain.ops.venues import LinkRecord
from offchain.ops.views import account_view, link_account_view
from offchain.settings import PROJECT_ROOT, Settings

VENUES = 3


def _stop_nodes(folder: Path, timeout_s: float = 10.0) -> list[int]:
    """SIGTERM to every process whose command line names `folder` (the nodes `deploy --venues`
    left running there); returns those that had not exited by the deadline."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(folder).encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and not _zombie(p)]
    return alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder to run the commands in: the nodes' homes land in its .marginsync/, so whatever a
    test leaves running there is stopped afterwards, and must stop on SIGTERM."""
    folder = tmp_path_factory.mktemp("venues")
    yield folder
    assert _stop_nodes(folder) == [], "a node ignored SIGTERM"


@pytest.fixture(scope="module")
def deployed(site: Path) -> tuple[LinkRecord, Path, str]:
    """`deploy --venues 3` run once; (the link file, its path, the command's output)."""
    deploy = ("deploy", "--venues", str(VENUES), "--committee", "3", "--committee-threshold", "2")
    _, out = run("--deployments-dir", "dep", *deploy, cwd=site)
    (path,) = (site / "dep").glob("link-*.json")
    return LinkRecord.load(path), path, out


def _cli(site: Path, *args: str, ok: bool = True, link: Path | None = None) -> tuple[int, str]:
    env = {"MARGINSYNC_LINK": str(link)} if link else None
    return run("--deployments-dir", "dep", *args, cwd=site, ok=ok, env=env)


def test_deploy_venues__writes_one_registry_per_chain__whose_links_name_each_other(
    deployed: tuple[LinkRecord, Path, str], site: Path
) -> None:
    link, path, out = deployed
    assert [v.chain_id for v in link.venues] == [31337 + i for i in range(VENUES)]
    assert path.name == f"link-{link.link_id[2:10]}.json"
    settings = Settings(deployments_dir=site / "dep")
    chains = [Chain.connect(settings, v.rpc_url) for v in link.venues]
    links = [checksum(v.venue_link) for v in link.venues]
    assert "0x" + link_id([v.chain_id for v in link.venues], links).hex() == link.link_id
    public_keys = [k.public_key() for k in dev_secret_keys(3)]
    for i, (chain, v) in enumerate(zip(chains, link.venues, strict=True)):
        assert chain.chain_id == v.chain_id  # each venue on its own chain
        d = Deployment.load(settings.deployments_dir, v.chain_id)
        assert d.venue_link == links[i]
        contract = chain.contract("VenueLink", links[i])
        assert "0x" + bytes(contract.functions.linkId().call()).hex() == link.link_id
        assert contract.functions.selfIndex().call() == i
        listed = contract.functions.venues().call()
        assert [(c, checksum(a)) for c, a, _ in listed] == [
            (w.chain_id, links[j]) for j, w in enumerate(link.venues)
        ]
        clearinghouse = chain.contract("Clearinghouse", d.clearinghouse)
        assert clearinghouse.functions.attestor().call() == links[i]
        assert contract.functions.inner().call() == d.attestation_verifier
        registry = Registry(chain, v.committee_registry)
        assert contract.functions.registry().call() == registry.address
        assert registry.public_keys() == public_keys  # the same committee on every venue
        assert registry.threshold() == link.committee_threshold == 2
    assert f"stop them with `kill {' '.join(str(v.node_pid) for v in link.venues)}`" in out


def test_deploy_venues__leaves_its_chains_running_for_the_commands_that_follow(
    deployed: tuple[LinkRecord, Path, str],
) -> None:
    link, _, _ = deployed
    for v in link.venues:
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        assert int(requests.post(v.rpc_url, json=body, timeout=5).json()["result"], 16) == (
            v.chain_id
        )
        assert v.node_home
        assert v.node_home.encode() in Path(f"/proc/{v.node_pid}/cmdline").read_bytes()


def _main(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cwd: Path,
    *args: str,
    link: Path | None = None,
) -> tuple[int, str]:
    """The `marginsync` entry point in this process, for mistakes (they end before any work):
    the same one-line handling as a process, without paying its imports per case."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["marginsync", "--deployments-dir", "dep", *args])
    if link:
        monkeypatch.setenv("MARGINSYNC_LINK", str(link))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            main()
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr()
    return int(stopped.value.code or 0), out.out + out.err


def _one_error_line(out: str, *fragments: str) -> None:
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, out
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("deploy", "--venues", "1"), ("--venues 1", "give --venues between 2 and 32")),
        (("deploy", "--venues", "33"), ("--venues 33", "between 2 and 32")),
        (("deploy", "--committee", "4"), ("--committee is for linked venues", "add --venues")),
        (
            ("deploy", "--venues", "2", "--committee", "3", "--committee-threshold", "4"),
            ("--committee-threshold 4 with a committee of 3", "between 1 and 3"),
        ),
        (("deploy", "--venues", "2", "--committee", "65"), ("1 to 64 members",)),
        (("deploy", "--venues", "2", "--committee", "0"), ("--committee 0", "1 to 64 members")),
        (("deploy", "--venues", "2", "--committee-threshold", "0"), ("threshold 0",)),
        (
            ("deploy", "--venues", "3", "--rpc", "http://127.0.0.1:1"),
            ("--venues 3 with 1 --rpc", "one --rpc per venue"),
        ),
        (("keeper", "--link", "nowhere.json"), ("no link file at nowhere.json", "deploy --venues")),
        (("link", "--link", "nowhere.json"), ("no link file at nowhere.json", "deploy --venues")),
        (("--venue", "1", "account"), ("MARGINSYNC_LINK names no link file", "export")),
        (("--venue", "1", "--rpc-url", "http://x", "status"), ("both name the node",)),
    ],
)
def test_bad_input__is_one_line_with_cause_and_fix__before_any_chain_starts(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    fragments: tuple[str, ...],
) -> None:
    code, out = _main(monkeypatch, capsys, tmp_path, *args)
    assert code == 1
    _one_error_line(out, *fragments)
    assert not (tmp_path / ".marginsync").exists()  # nothing started, nothing written


def test_bad_input_about_chains__is_one_line_with_cause_and_fix(
    deployed: tuple[LinkRecord, Path, str],
    site: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    link, path, _ = deployed
    first = link.venues[0].rpc_url
    sepolia = Anvil(chain_id=11155111, accounts=2).start()
    cases = [
        (
            ("deploy", "--venues", "2", "--rpc", first, "--rpc", first),
            ("both chain 31337", "own chain id"),
        ),
        (
            ("deploy", "--venues", "2", "--rpc", first, "--rpc", sepolia.url),
            ("chain 11155111 is not a local chain", "leave out --rpc", "31337-31352"),
        ),
        (
            ("keeper", "--link", str(path), "--journal", "k.sqlite"),
            ("each venue of --link needs its own", "leave out --journal"),
        ),
        (
            ("pledge", "add", "1", "--from-venue", "0", "--to-venue", "31337", "--link", str(path)),
            ("both venue 0", "different --to-venue"),
        ),
        (
            ("pledge", "add", "1", "--from-venue", "0", "--to-venue", "7", "--link", str(path)),
            ("'7' is not a venue of the link", "0 (chain 31337)"),
        ),
        (
            ("pledge", "add", "0", "--from-venue", "0", "--to-venue", "1", "--link", str(path)),
            ("not a positive amount",),
        ),
        (("--venue", "5", "status"), ("--venue '5' is not a venue of the link", "0 (chain 31337)")),
    ]
    try:
        for args, fragments in cases:
            code, out = _main(monkeypatch, capsys, site, *args, link=path)
            assert code == 1, out
            _one_error_line(out, *fragments)
    finally:
        sepolia.stop()
    assert len(json.loads(path.read_text())["venues"]) == VENUES  # the link file is untouched


# ---------------------------------------------------------------------------- the keeper
# The trader is 10 ETH long at 3000 on venue 0 and 10 ETH short on venue 1, each on 5,000 USDC
# (static IM 3,000, MM 1,950 per venue); the fixtures are tests/venues/conftest.py's.


@pytest.fixture
def trader(linked: Linked) -> str:
    trader = linked.chains[0].accounts[4]
    for client, size in ((linked.clients[0], 10), (linked.clients[1], -10)):
        maker = client.chain.accounts[5]
        fund(client, trader, "USDC", usdc(5_000))
        fund(client, maker, "USDC", usdc(1_000_000))
        trade = client.fn("settleTrade", 0, trader, maker, wad(size), client.price_e18("ETH"))
        send_fast(client.chain, trade, client.d.matcher)
    return trader


def _keeper(linked: Linked, venue: int) -> Keeper:
    return Keeper(linked.clients[venue], linked.chains[venue].accounts[10])


def _certify(linked: Linked, trader: str, mm_wad: int, pledged_wad: int = 0) -> None:
    """A certificate allocating MM `mm_wad` (IM the same) to venue 0, applied there."""
    views = [linked.view(j, trader, 0, 0) for j in range(len(linked.chains))]
    views[0] = linked.view(0, trader, mm_wad, mm_wad, pledged_wad)
    linked.submit(0, linked.certificate(trader, 1, views))


def test_keeper_on_a_linked_venue__liquidates_by_a_certificate_that_tightens(
    linked: Linked, trader: str
) -> None:
    # X2: a certificate tightens always. Equity 5,000 is above the static MM (1,950) and below
    # the certified 6,000: only a keeper that reads the link's certificate liquidates.
    keeper = _keeper(linked, 0)
    assert keeper.step() == []  # standalone: healthy
    _certify(linked, trader, wad(6_000))
    done = keeper.step()
    assert [(d.account, d.market_id) for d in done] == [(trader, 0)]


def test_keeper_on_a_linked_venue__spares_what_a_certificate_covers__until_it_lapses(
    linked: Linked, trader: str
) -> None:
    # X2 loosens by what pledges cover; X6 and G08: once the certificate stops counting (30 s),
    # the venue's standalone rule is back and the keeper liquidates by it.
    client = linked.clients[0]
    client.set_price("ETH", 2_560)  # equity 600, static MM 1,664: under water standing alone
    _certify(linked, trader, 0, pledged_wad=wad(2_000))  # MM max(0, 1,664 - 2,000) = 0
    keeper = _keeper(linked, 0)
    assert keeper.step() == []
    assert keeper.last_round.candidates == 0
    rpc(client, "evm_increaseTime", 31)
    rpc(client, "evm_mine")
    done = keeper.step()
    assert [(d.account, d.market_id) for d in done] == [(trader, 0)]


def test_one_keeper_loop__follows_two_venues__each_by_its_own_rule(
    linked: Linked, trader: str
) -> None:
    # Venue 0 liquidates by its certificate in force; venue 1, with none, by its static rule.
    _certify(linked, trader, wad(6_000))
    linked.clients[1].set_price("ETH", 3_450)  # the short: equity 500, static MM 2,242
    keepers = [_keeper(linked, 0), _keeper(linked, 1)]
    seen: list[tuple[int, str, int]] = []
    run_keepers(
        keepers,
        poll_interval_s=0.05,
        rounds=1,
        on_round=lambda k, _n, done: seen.extend(
            (k.chain.chain_id, d.account, d.market_id) for d in done
        ),
    )
    assert sorted(seen) == [(31337, trader, 0), (31338, trader, 0)]


def test_account_view_on_a_linked_venue__says_when_a_certificate_sets_the_margin(
    linked: Linked, trader: str
) -> None:
    client = linked.clients[0]
    before = account_view(client, trader)
    assert (before.certified, before.attested, before.mm_usd) == (False, False, 1_950)
    _certify(linked, trader, wad(2_500), pledged_wad=wad(100))
    during = account_view(client, trader)
    assert (during.certified, during.mm_usd) == (True, 2_500)
    link = link_account_view(client, trader)
    assert link is not None
    assert (link.sequence, link.pledged_usd) == (1, 100)
    rpc(client, "evm_increaseTime", 31)  # G08: the certificate stops counting
    rpc(client, "evm_mine")
    after = account_view(client, trader)
    assert (after.certified, after.mm_usd) == (False, 1_950)


# ---------------------------------------------------------------------------- the walkthrough
def walkthrough() -> list[list[str]]:
    """The `marginsync` and `export` lines of docs/venues.md's walkthrough, in order."""
    text = (PROJECT_ROOT / "docs" / "venues.md").read_text()
    block = text[text.index("```bash") + len("```bash") :]
    block = block[: block.index("```")]
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [words for words in lines if words and words[0] in ("marginsync", "export")]


def test_docs_walkthrough__links_three_venues__certifies__keeps__and_releases_a_pledge(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The user's walkthrough, command by command, as processes: a book hedged across venues 0
    # and 1, a pledge on venue 1 for venue 0 (X3), the committee (members as processes) applying
    # certificates on every venue, one keeper over all venues, and a two-phase release (X3, G03).
    site = tmp_path_factory.mktemp("walkthrough")
    env = {"MARGINSYNC_DEPLOYMENTS_DIR": str(site / "deployments")}
    out: dict[str, list[str]] = {}
    services: list[Service] = []
    try:
        for words in walkthrough():
            if words[0] == "export":
                name, value = words[1].split("=", 1)
                env[name] = value
                continue
            args = [re.sub(r"\$(\w+)", lambda m: env[m[1]], w) for w in words[1:]]
            key = args[2] if args[0] == "--venue" else args[0]
            if args[-1] == "&":
                services.append(Service(*args[:-1], env=env, cwd=site))
                out.setdefault(key, []).append(services[-1].wait_for("applied on every venue"))
                continue
            if args[:2] == ["pledge", "list"]:
                services[0].wait_for("1 order(s)")  # the committee's RELEASE order (phase 2)
            out.setdefault(key, []).append(run(*args, env=env, cwd=site)[1])
        status = services[0].wait_for(" and 1 orders in ")  # the heartbeat, after the release
        link = LinkRecord.load(site / env["MARGINSYNC_LINK"])
        venue = Chain.connect(Settings(), link.venues[1].rpc_url)
        contract = venue.contract("VenueLink", link.venues[1].venue_link)
        usdc_1 = venue.contract(
            "MockERC20", Deployment.load(site / "deployments", 31338).collaterals[0].token
        )
        trader = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"  # Anvil account 4
        pledge = contract.functions.pledgeOf(1).call()
        allowance = contract.functions.rebalanceAllowance(trader).call()
        wallet = usdc_1.functions.balanceOf(trader).call()
    finally:
        codes = [s.stop() for s in services]
        assert _stop_nodes(site) == [], "a node ignored SIGTERM"
    assert codes == [0]
    assert f"export MARGINSYNC_LINK={env['MARGINSYNC_LINK']}" in out["deploy"][0]
    assert "stop them with `kill " in out["deploy"][0]
    assert "certificate lag p50 " in status
    assert "certificate lag p50" in status
    assert (checksum(pledge[0]), pledge[1], pledge[2], pledge[3]) == (trader, 0, 3, 0)  # X3
    assert wallet == 2_000 * 10**6  # the pledge, back in the trader's wallet (phase 2)
    assert allowance == 1_000 * 10**6  # X5: the cap the trader set
    assert f"pledge 1 on venue 1 (chain 31338): 2000 USDC of {trader}" in out["pledge"][0]
    assert "(certified; static IM $3,000.00, MM $1,950.00)" in out["account"][0]
    assert "link: certificate" in out["account"][0]
    assert "pledges counted here $2,000.00" in out["account"][0]
    for v in link.venues:
        assert f"round 1 on chain {v.chain_id}: 0 liquidation(s)" in out["keeper"][0]
    assert "│ 1     │ 1      │ 0         │ released │ 0      │" in out["pledge"][-1]
