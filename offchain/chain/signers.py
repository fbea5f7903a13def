"""Who signs a transaction: a key held in this process, or an account the node holds unlocked
(Anvil's development accounts). Both return the raw signed bytes, which the sender journals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import RPCEndpoint

from offchain.chain.bindings import Chain, checksum
from offchain.errors import SendRejected


class TxSigner(Protocol):
    address: str

    def sign(self, tx: Mapping[str, Any]) -> bytes:
        """The raw signed transaction."""
        ...


class LocalTxSigner:
    """A key held in this process."""

    def __init__(self, account: LocalAccount) -> None:
        self._account = account
        self.address = str(account.address)

    def sign(self, tx: Mapping[str, Any]) -> bytes:
        return bytes(self._account.sign_transaction(dict(tx)).raw_transaction)


class NodeTxSigner:
    """An account the node holds unlocked (Anvil's development accounts): `eth_signTransaction`
    returns the same raw bytes a local key would, so the journal works the same way."""

    def __init__(self, w3: Web3, address: str) -> None:
        self._w3 = w3
        self.address = str(checksum(address))

    def sign(self, tx: Mapping[str, Any]) -> bytes:
        body = {
            k: (v if isinstance(v, str) else "0x" + v.hex() if isinstance(v, bytes) else hex(v))
            for k, v in tx.items()
        }
        body["from"] = self.address
        response = self._w3.provider.make_request(RPCEndpoint("eth_signTransaction"), [body])
        if "error" in response:
            raise SendRejected(
                f"the node would not sign for {self.address}: {response['error']}",
                "give the keeper a private key (MARGINSYNC_PRIVATE_KEY) on a real network",
            )
        return bytes.fromhex(str(response["result"])[2:])


def tx_signer_for(chain: Chain, address: str) -> TxSigner:
    """The chain's local key for `address` if it holds one, else the node's unlocked account."""
    # Chain keeps its keys private and has no accessor; reading them here avoids a second copy.
    local = chain._local.get(checksum(address))
    return LocalTxSigner(local) if local is not None else NodeTxSigner(chain.w3, address)
