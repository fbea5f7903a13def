"""Running `marginsync` as users do: one-shot commands and long-running services, as processes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def run(
    *args: str, env: dict[str, str] | None = None, ok: bool = True, cwd: Path | None = None
) -> tuple[int, str]:
    """One command to completion; stdout and stderr together. With `ok`, it must succeed."""
    proc = subprocess.run(
        [sys.executable, "-m", "offchain.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        cwd=cwd,
    )
    assert "Traceback" not in proc.stdout, proc.stdout
    if ok:
        assert proc.returncode == 0, proc.stdout
    return proc.returncode, proc.stdout


class Service:
    """A long-running command (engine, keeper) whose output lines are collected as they come."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "offchain.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, fragment: str, timeout_s: float = 120.0) -> str:
        """The first line (seen so far or to come) containing `fragment`. The deadline only
        bounds a broken run; a passing run returns as soon as the line appears."""
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.lines:
                if fragment in line:
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.proc.poll() is not None and self._queue.empty()):
                raise AssertionError(f"no line with {fragment!r}:\n" + "\n".join(self.lines))
            try:
                self.lines.append(self._queue.get(timeout=min(remaining, 1.0)))
            except queue.Empty:
                continue

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
