"""An embedded local chain: starts a real Anvil process on a free port and stops it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

import requests

from offchain.errors import ToolchainError
from offchain.settings import PROJECT_ROOT

_NPM_ANVIL = PROJECT_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
# Anvil's default development mnemonic: its accounts are unlocked and publicly known.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def find_anvil(configured: str | None = None) -> str:
    """The Anvil binary: the configured one, then PATH, then the npm package in node_modules."""
    for candidate in (configured, os.environ.get("MARGINSYNC_ANVIL_BIN"), shutil.which("anvil")):
        if candidate and Path(candidate).exists():
            return candidate
    if _NPM_ANVIL.exists():
        return str(_NPM_ANVIL)
    raise ToolchainError(
        "no Anvil binary found (not on PATH, not in node_modules)",
        "run `make install` (it installs @foundry-rs/anvil from npm) or set MARGINSYNC_ANVIL_BIN",
    )


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _unblock_stop_signals() -> None:
    """In the child, before exec: it inherits the mask `start` holds while it forks; with the
    stop signals still blocked, the node would ignore SIGTERM (`stop`, `kill <pid>`) until
    SIGKILL."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    """A running Anvil node. Use as a context manager; `url` is its RPC endpoint."""

    def __init__(
        self,
        *,
        accounts: int = 20,
        balance_eth: int = 1_000_000,
        block_time_s: float | None = None,
        chain_id: int = 31337,
        binary: str | None = None,
        extra_args: tuple[str, ...] = (),
        home: Path | None = None,
    ) -> None:
        """`home`: a folder for the node's log and spilled state, kept when it stops (a node
        that will be `detach`ed); without one both go to a temporary folder `stop` removes."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.chain_id = chain_id
        args = [
            find_anvil(binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--accounts",
            str(accounts),
            "--balance",
            str(balance_eth),
            "--chain-id",
            str(chain_id),
            "--mnemonic",
            DEV_MNEMONIC,
            "--silent",
        ]
        if block_time_s is not None:
            args += ["--block-time", str(block_time_s)]
        self._args = [*args, *extra_args]
        self._proc: subprocess.Popen[bytes] | None = None
        self._cache: str | None = None
        self.home = home

    def start(self, timeout_s: float = 20.0) -> Anvil:
        # A SIGTERM/SIGINT landing between the fork and the assignment would orphan the node:
        # hold them until `_proc` is set, then let them raise inside the `try` below.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            # Anvil spills old block states to disk (by default under ~/.foundry/anvil/tmp, and
            # never removed when the node is killed): a lab run or a test suite left gigabytes
            # there. Each node gets its own folder, removed by `stop`.
            if self.home is None:
                self._cache = cache = tempfile.mkdtemp(prefix="marginsync-anvil-")
                stderr: int | IO[bytes] = subprocess.PIPE
            else:
                (self.home / "cache").mkdir(parents=True, exist_ok=True)
                cache = str(self.home / "cache")
                # A file, not a pipe: a detached node outlives the reader a pipe would need.
                stderr = (self.home / "anvil.log").open("ab")
            self._proc = subprocess.Popen(
                [*self._args, "--cache-path", cache],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=_unblock_stop_signals,
            )
            if not isinstance(stderr, int):
                stderr.close()  # the node holds its own copy
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        try:
            self._wait_until_up(timeout_s)
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) or failed while starting: `__exit__` will not run,
            # so the node must not outlive us from here.
            self.stop()
            raise
        return self

    def _wait_until_up(self, timeout_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = (
                    self._proc.stderr.read().decode()
                    if self._proc.stderr
                    else (self.home / "anvil.log").read_text()
                    if self.home
                    else ""
                )
                raise ToolchainError(f"Anvil exited at start: {err.strip()}", "check the arguments")
            try:
                body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
                if requests.post(self.url, json=body, timeout=0.5).ok:
                    return
            except requests.RequestException:
                time.sleep(0.05)
        raise ToolchainError(f"Anvil did not answer on {self.url} within {timeout_s}s", "retry")

    def detach(self) -> int:
        """Lets the running node outlive this process (it runs in its own session); returns
        its pid, which stops it (`kill <pid>`). `stop` no longer touches it."""
        if self._proc is None or self._proc.poll() is not None:
            raise ToolchainError("the Anvil node is not running", "start it before detaching")
        pid = self._proc.pid
        self._proc = None
        return pid

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None
        if self._cache:
            shutil.rmtree(self._cache, ignore_errors=True)
            self._cache = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
