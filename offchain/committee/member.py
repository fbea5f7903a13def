"""A committee member: signs a certificate's 32-byte message only when its own view reproduces
that message, and never two different messages for one sequence (THREATS G06).

A member's view answers in one of two ways. `reproduces(sequence, message)` says whether the
member's own view holds that message for that sequence (a callback, or a file of messages). A
request may instead carry a `proposal`: the message's inputs as JSON (a cross-venue
certificate, a pledge order), and `rebuild(proposal)` returns the message the member's OWN
mirrors build from it (offchain/link/view.py), or raises `SigningRefused`; the member signs only
if that equals the message. Either way it never signs two messages for one sequence (for a
certificate of a link, the "sequence" is the account's slot: account and link sequence packed
into one integer, `link.view.certificate_slot`).

A member runs in-process (`Member`) or as its own process speaking JSON lines on stdin/stdout
(`python -m offchain.committee.member --view FILE`, or a view of its own such as
`python -m offchain.link.member`; key in the environment):

    → {"method": "public_key"}                         ← {"result": "0x…256 bytes"}
    → {"method": "sign", "sequence": 7, "message": "0x…32 bytes"[, "proposal": {…}]}
                                                       ← {"result": "0x…128 bytes"} | {"error": "…"}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from offchain.committee.bls import SecretKey
from offchain.errors import ConfigError, SigningRefused

Reproduces = Callable[[int, bytes], bool]
Proposal = Mapping[str, Any]  # a message's inputs, as JSON
Rebuild = Callable[[Proposal], bytes]
KEY_ENV = "MARGINSYNC_COMMITTEE_KEY"
MESSAGE_BYTES = 32


class Member:
    """One member's key, view and memory of what it signed."""

    def __init__(
        self, key: SecretKey, reproduces: Reproduces, rebuild: Rebuild | None = None
    ) -> None:
        self._key = key
        self._reproduces = reproduces
        self._rebuild = rebuild
        self._signed: dict[int, bytes] = {}
        self.public_key = key.public_key()

    def sign(self, sequence: int, message: bytes, proposal: Proposal | None = None) -> bytes:
        if len(message) != MESSAGE_BYTES:
            raise SigningRefused(f"a certificate message is {MESSAGE_BYTES} bytes", "")
        earlier = self._signed.get(sequence)
        if earlier is not None and earlier != message:
            raise SigningRefused(
                f"already signed 0x{earlier.hex()} for sequence {sequence}",
                "a sequence is certified once; propose a new sequence",
            )
        if proposal is not None:
            self._check_rebuilds(message, proposal)
        elif not self._reproduces(sequence, message):
            raise SigningRefused(
                f"my view does not reproduce 0x{message.hex()} for sequence {sequence}", ""
            )
        self._signed[sequence] = message
        return self._key.sign(message)

    def _check_rebuilds(self, message: bytes, proposal: Proposal) -> None:
        if self._rebuild is None:
            raise SigningRefused("this member checks no proposals", "send the message alone")
        rebuilt = self._rebuild(proposal)  # raises SigningRefused when it cannot
        if rebuilt != message:
            raise SigningRefused(
                f"my mirrors rebuild 0x{rebuilt.hex()}, not 0x{message.hex()}",
                "the proposal's state is not the chain's as this member sees it",
            )


def view_from_file(path: Path) -> Reproduces:
    """A view kept in a JSON file {"<sequence>": "0x<message>"}, re-read on every request."""

    def reproduces(sequence: int, message: bytes) -> bool:
        try:
            view = json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return bool(view.get(str(sequence)) == "0x" + message.hex())

    return reproduces


def serve(member: Member, lines_in: IO[str], lines_out: IO[str]) -> None:
    """Answers JSON-line requests until the input closes."""
    for line in lines_in:
        reply: dict[str, Any]
        try:
            request = json.loads(line)
            if request["method"] == "public_key":
                reply = {"result": "0x" + member.public_key.hex()}
            elif request["method"] == "sign":
                message = bytes.fromhex(str(request["message"]).removeprefix("0x"))
                signature = member.sign(int(request["sequence"]), message, request.get("proposal"))
                reply = {"result": "0x" + signature.hex()}
            else:
                reply = {"error": f"unknown method {request['method']!r}"}
        except SigningRefused as exc:
            reply = {"error": str(exc)}
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"error": f"malformed request: {exc}"}
        lines_out.write(json.dumps(reply) + "\n")
        lines_out.flush()


class MemberProcess:
    """A member in its own process, driven over its stdin/stdout: by default this module with a
    view file, or `command` (e.g. `[python, -m, offchain.link.member, --config, FILE]`)."""

    def __init__(
        self, key: SecretKey, view: Path | None = None, command: Sequence[str] | None = None
    ) -> None:
        if command is None:
            if view is None:
                raise ConfigError("a member process needs a view file or a command", "give one")
            command = [sys.executable, "-m", "offchain.committee.member", "--view", str(view)]
        env = {**os.environ, KEY_ENV: hex(key.value)}
        self._proc = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    @cached_property
    def public_key(self) -> bytes:
        # Asked lazily, so that several members' processes start in parallel.
        return bytes.fromhex(self._request({"method": "public_key"})[2:])

    def _request(self, request: dict[str, Any]) -> str:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise SigningRefused("the member process exited", "check its stderr")
        reply = json.loads(line)
        if "error" in reply:
            raise SigningRefused(str(reply["error"]), "")
        return str(reply["result"])

    def sign(self, sequence: int, message: bytes, proposal: Proposal | None = None) -> bytes:
        request: dict[str, Any] = {
            "method": "sign",
            "sequence": sequence,
            "message": "0x" + message.hex(),
        }
        if proposal is not None:
            request["proposal"] = dict(proposal)
        return bytes.fromhex(self._request(request)[2:])

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)


def key_from_env() -> SecretKey:
    """The member's BLS secret key, from `MARGINSYNC_COMMITTEE_KEY` (hex)."""
    raw = os.environ.get(KEY_ENV)
    if not raw:
        raise ConfigError(f"{KEY_ENV} is not set", "give the member's BLS secret key as hex")
    return SecretKey(int(raw, 16))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A marginsync committee member (JSON lines).")
    parser.add_argument("--view", type=Path, required=True, help="JSON {sequence: message}")
    args = parser.parse_args(argv)
    serve(Member(key_from_env(), view_from_file(args.view)), sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
