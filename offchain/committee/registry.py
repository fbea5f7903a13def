"""Typed calls on one deployed CommitteeRegistry, and the certificate it verifies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3.types import TxReceipt

from offchain.chain import Chain
from offchain.committee import eip2537
from offchain.committee.bls import SecretKey


@dataclass(frozen=True)
class Certificate:
    """What the registry's `verify` takes: one aggregate signature by the bitmap's members."""

    message: bytes
    signer_bitmap: int
    signature: bytes

    def as_args(self) -> tuple[bytes, int, bytes]:
        return self.message, self.signer_bitmap, self.signature

    @property
    def signers(self) -> list[int]:
        return [i for i in range(self.signer_bitmap.bit_length()) if self.signer_bitmap >> i & 1]


class Registry:
    """One CommitteeRegistry: reads, `verify` as a call, owner actions pre-flighted and sent."""

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.contract = chain.contract("CommitteeRegistry", address)
        self.address = str(self.contract.address)

    @classmethod
    def deploy(
        cls, chain: Chain, owner: str, members: Sequence[SecretKey], threshold: int
    ) -> Registry:
        """Deploys a committee of `members` (their keys and proofs of possession)."""
        keys = [m.public_key() for m in members]
        proofs = [m.prove_possession() for m in members]
        return cls(
            chain,
            chain.deploy("CommitteeRegistry", owner, keys, proofs, threshold, sender=owner).address,
        )

    # ------------------------------------------------------------------ reads
    def public_keys(self) -> list[bytes]:
        blob: bytes = self.chain.call(self.contract.functions.publicKeys(), "read committee keys")
        size = eip2537.G2_BYTES
        return [blob[i : i + size] for i in range(0, len(blob), size)]

    def threshold(self) -> int:
        return int(self.contract.functions.threshold().call())

    def key_epoch(self) -> int:
        return int(self.contract.functions.keyEpoch().call())

    def verify(self, certificate: Certificate) -> int:
        """The key epoch the certificate verifies under; raises `ContractRevert` if it does not."""
        fn = self.contract.functions.verify(*certificate.as_args())
        return int(self.chain.call(fn, "verify certificate"))

    def cached_signer_sets(self, from_block: int = 0) -> list[int]:
        """The bitmaps whose aggregate key is cached under the current key epoch (from events)."""
        epoch = self.key_epoch()
        events = self.chain.get_events([self.address], from_block, self.chain.w3.eth.block_number)
        return [
            int(e.args["signerBitmap"])
            for e in events
            if e.name == "SignerSetCached" and e.args["keyEpoch"] == epoch
        ]

    # ------------------------------------------------------------------ actions
    def cache_signer_set(self, signer_bitmap: int, sender: str) -> TxReceipt:
        """Permissionless: certificates of this signer set then skip every G2 addition."""
        return self._send("cacheSignerSet", sender, signer_bitmap)

    # ------------------------------------------------------------------ owner actions
    def add_members(self, members: Sequence[SecretKey], sender: str) -> TxReceipt:
        keys = [m.public_key() for m in members]
        proofs = [m.prove_possession() for m in members]
        return self._send("addMembers", sender, keys, proofs)

    def remove_member(self, index: int, sender: str) -> TxReceipt:
        return self._send("removeMember", sender, index)

    def rotate_member(self, index: int, member: SecretKey, sender: str) -> TxReceipt:
        return self._send(
            "rotateMember", sender, index, member.public_key(), member.prove_possession()
        )

    def set_threshold(self, threshold: int, sender: str) -> TxReceipt:
        return self._send("setThreshold", sender, threshold)

    def _send(self, name: str, sender: str, *args: Any) -> TxReceipt:
        return self.chain.send(getattr(self.contract.functions, name)(*args), sender, name)
