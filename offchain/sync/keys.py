"""Engine attestation keys: where they come from and how k of them sign one digest.

Sources, in order (the first that is configured wins; they are never mixed):
1. `MARGINSYNC_ENGINE_KEYS`: comma-separated 0x-hex private keys.
2. `MARGINSYNC_ENGINE_KEYSTORES`: comma-separated paths to eth-account JSON keystores, all
   decrypted with the password in `MARGINSYNC_ENGINE_KEYSTORE_PASSWORD`.
3. `MARGINSYNC_ENGINE_SIGNER_URL` with `MARGINSYNC_ENGINE_SIGNER_ADDRESSES`: keys held outside
   the process (a node's unlocked accounts, or a remote signer such as Clef or Web3Signer in
   front of an HSM or KMS), asked through `eth_signTypedData_v4` with the batch's typed data.
4. `--dev-keys`: the public development keys (`offchain.chain.deploy.dev_engine_keys`),
   accepted only on a local chain id, since anyone can sign with them.

Keys are never read from the repository: a keystore inside the project tree is refused. Fewer
than k usable registered keys is a start-up error that names what is missing (fail closed).

`Quorum.sign` collects exactly k signatures (the verifier wants exactly its threshold), trying
spare keys when one fails; if fewer than k succeed it raises `SignerUnavailable` and the engine
stops attesting (D14).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import requests
from eth_account import Account

from offchain.attest import (
    Batch,
    Domain,
    address_of,
    digest,
    recover_digest_signers,
    sign_digest,
    typed_data,
)
from offchain.chain.deploy import dev_engine_keys
from offchain.errors import ConfigError, MarginsyncError
from offchain.settings import PROJECT_ROOT

ENV_KEYS = "MARGINSYNC_ENGINE_KEYS"
ENV_KEYSTORES = "MARGINSYNC_ENGINE_KEYSTORES"
ENV_KEYSTORE_PASSWORD = "MARGINSYNC_ENGINE_KEYSTORE_PASSWORD"
ENV_SIGNER_URL = "MARGINSYNC_ENGINE_SIGNER_URL"
ENV_SIGNER_ADDRESSES = "MARGINSYNC_ENGINE_SIGNER_ADDRESSES"
# Anvil/Hardhat (31337), the local venues of a linked set after it (31338-31352: one Anvil per
# venue, distinct chain ids) and geth --dev (1337): chains where public keys cannot cost anyone
# money.
LOCAL_VENUE_CHAIN_IDS = tuple(range(31337, 31337 + 16))
LOCAL_CHAIN_IDS = frozenset({*LOCAL_VENUE_CHAIN_IDS, 1337})


class EngineKeyError(ConfigError):
    """The engine cannot assemble a signing quorum from its configured keys."""


class SignerUnavailable(MarginsyncError):
    """Fewer than k signers answered: the engine must stop attesting (D14)."""


class Signer(Protocol):
    """One attestation key, wherever it is held."""

    @property
    def address(self) -> str: ...

    def sign_batch(self, batch: Batch, domain: Domain, message_digest: bytes) -> bytes:
        """A 65-byte (r ‖ s ‖ v) low-s signature over the batch's EIP-712 digest, v in {27, 28}.
        `message_digest` is `digest(batch, domain)`, computed once by the caller."""
        ...


@dataclass(frozen=True)
class LocalSigner:
    """A private key held in memory."""

    key: bytes

    @property
    def address(self) -> str:
        return address_of(self.key)

    def sign_digest(self, message_digest: bytes) -> bytes:
        return sign_digest(message_digest, [self.key])

    def sign_batch(self, batch: Batch, domain: Domain, message_digest: bytes) -> bytes:
        return self.sign_digest(message_digest)

    def __repr__(self) -> str:  # never print key material
        return f"LocalSigner({self.address})"


@dataclass(frozen=True)
class JsonRpcSigner:
    """A key that never enters this process: `eth_signTypedData_v4` on a JSON-RPC endpoint that
    holds it (a node's unlocked account, or a remote signer in front of an HSM or KMS). The
    answer is checked before it counts: 65 bytes, low s, and recovering to `address` for the
    digest this process computed, so a signer that signs something else is caught here."""

    url: str
    address: str
    timeout_s: float = 5.0

    def sign_batch(self, batch: Batch, domain: Domain, message_digest: bytes) -> bytes:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "eth_signTypedData_v4",
            "params": [self.address, json.dumps(typed_data(batch, domain))],
        }
        try:
            reply = requests.post(self.url, json=body, timeout=self.timeout_s).json()
        except (requests.RequestException, ValueError) as exc:
            raise self._down(f"{type(exc).__name__}") from exc
        if "error" in reply:
            error = reply["error"]
            raise self._down(error.get("message", str(error)) if isinstance(error, dict) else error)
        try:
            sig = bytes.fromhex(str(reply["result"]).removeprefix("0x"))
        except (KeyError, ValueError) as exc:
            raise self._down("the reply holds no hex signature") from exc
        if len(sig) == 65 and sig[64] in (0, 1):  # some signers give the raw recovery id
            sig = sig[:64] + bytes([sig[64] + 27])
        try:
            signers = recover_digest_signers(message_digest, sig) if len(sig) == 65 else []
        except ValueError as exc:
            raise self._down(str(exc)) from exc
        if [s.lower() for s in signers] != [self.address.lower()]:
            raise self._down("its signature does not recover to this address for this batch")
        return sig

    def _down(self, why: str) -> SignerUnavailable:
        return SignerUnavailable(
            f"signer {self.address} at {self.url}: {why}",
            "check that the endpoint holds this key and answers eth_signTypedData_v4",
        )


def _parse_hex_key(text: str, where: str) -> bytes:
    raw = text.strip().removeprefix("0x")
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise EngineKeyError(
            f"{where}: an entry is not a 32-byte hex private key",
            f"give 0x-prefixed 64-hex-digit keys separated by commas in {ENV_KEYS}",
        )
    return key


def _inside_repo(path: Path) -> bool:
    try:
        path.resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        return False
    return True


def _load_keystore(path: Path, password: str) -> bytes:
    if _inside_repo(path):
        raise EngineKeyError(
            f"keystore {path} lies inside the repository",
            "keep engine keys outside the source tree (e.g. ~/.marginsync/keys/)",
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EngineKeyError(
            f"cannot read keystore {path}: {exc}", "give a readable eth-account JSON keystore"
        ) from exc
    try:
        return bytes(Account.decrypt(data, password))
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineKeyError(
            f"cannot decrypt keystore {path} ({type(exc).__name__})",
            f"check the password in {ENV_KEYSTORE_PASSWORD}",
        ) from exc


def load_signers(
    *, chain_id: int, dev_keys: bool, dev_count: int = 3, env: Mapping[str, str] | None = None
) -> list[Signer]:
    """The configured engine keys as signers (see the module docstring for the sources)."""
    env = os.environ if env is None else env
    if env.get(ENV_KEYS, "").strip():
        parts = [p for p in env[ENV_KEYS].split(",") if p.strip()]
        keys = [_parse_hex_key(p, ENV_KEYS) for p in parts]
    elif env.get(ENV_KEYSTORES, "").strip():
        password = env.get(ENV_KEYSTORE_PASSWORD)
        if password is None:
            raise EngineKeyError(
                f"{ENV_KEYSTORES} is set but {ENV_KEYSTORE_PASSWORD} is not",
                "export the keystore password in that variable",
            )
        paths = [Path(p.strip()).expanduser() for p in env[ENV_KEYSTORES].split(",") if p.strip()]
        keys = [_load_keystore(p, password) for p in paths]
    elif env.get(ENV_SIGNER_URL, "").strip():
        return _remote_signers(env[ENV_SIGNER_URL].strip(), env.get(ENV_SIGNER_ADDRESSES, ""))
    elif dev_keys:
        if chain_id not in LOCAL_CHAIN_IDS:
            raise EngineKeyError(
                f"--dev-keys on chain {chain_id}: the development keys are public",
                f"use them on a local chain only; elsewhere set {ENV_KEYS} or {ENV_KEYSTORES}",
            )
        keys = [bytes.fromhex(k[2:]) for k in dev_engine_keys(dev_count)]
    else:
        raise EngineKeyError(
            "no engine keys configured",
            f"set {ENV_KEYS} (comma-separated hex) or {ENV_KEYSTORES} with "
            f"{ENV_KEYSTORE_PASSWORD}, or pass --dev-keys on a local chain",
        )
    unique = list(dict.fromkeys(keys))  # a key listed twice is one signer, not two
    return [LocalSigner(k) for k in unique]


def _remote_signers(url: str, addresses: str) -> list[Signer]:
    from eth_utils import is_address, to_checksum_address

    parts = [a.strip() for a in addresses.split(",") if a.strip()]
    if not parts or not all(is_address(a) for a in parts):
        raise EngineKeyError(
            f"{ENV_SIGNER_URL} is set but {ENV_SIGNER_ADDRESSES} does not list valid addresses",
            f"set {ENV_SIGNER_ADDRESSES} to the comma-separated addresses the signer holds",
        )
    unique = list(dict.fromkeys(to_checksum_address(a) for a in parts))
    return [JsonRpcSigner(url, a) for a in unique]


class Quorum:
    """k of the registered signers; `sign` returns the concatenated signatures the verifier
    wants (exactly k, ascending signer address)."""

    def __init__(self, signers: Sequence[Signer], threshold: int) -> None:
        self.signers = list(signers)
        self.threshold = threshold

    @classmethod
    def assemble(
        cls, signers: Sequence[Signer], registered: Sequence[str], threshold: int
    ) -> Quorum:
        """Keep the signers the verifier knows; fail closed with a clear error below k."""
        known = {a.lower() for a in registered}
        usable = [s for s in signers if s.address.lower() in known]
        if len(usable) < threshold:
            unknown = [s.address for s in signers if s.address.lower() not in known]
            raise EngineKeyError(
                f"{len(usable)} usable engine key(s), but the verifier's threshold is "
                f"{threshold} (configured {len(signers)}; not registered: {unknown or 'none'})",
                f"configure at least {threshold} keys registered on the AttestationVerifier",
            )
        return cls(usable, threshold)

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.signers]

    def sign_batch(
        self, batch: Batch, domain: Domain, message_digest: bytes | None = None
    ) -> bytes:
        """k signatures over the batch; spare keys stand in for failing ones."""
        message_digest = message_digest or digest(batch, domain)
        return self._collect(lambda signer: signer.sign_batch(batch, domain, message_digest))

    def _collect(self, sign_one: Callable[[Signer], bytes]) -> bytes:
        collected: list[tuple[str, bytes]] = []
        failures: list[str] = []
        for signer in self.signers:
            if len(collected) == self.threshold:
                break
            try:
                sig = sign_one(signer)
            except Exception as exc:  # a remote signer can fail in any way; each counts as down
                failures.append(f"{signer.address[:10]}: {type(exc).__name__}: {exc}")
                continue
            if len(sig) != 65:
                failures.append(f"{signer.address[:10]}: returned {len(sig)} bytes, not 65")
                continue
            collected.append((signer.address.lower(), sig))
        if len(collected) < self.threshold:
            raise SignerUnavailable(
                f"only {len(collected)} of the {self.threshold} required signatures "
                f"({'; '.join(failures) or 'no signer answered'})",
                "restore the failing signer(s); attesting stays stopped until then",
            )
        collected.sort()
        return b"".join(sig for _, sig in collected)
