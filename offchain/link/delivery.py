"""One venue's chain as the cross-venue engine uses it: its oracle prices, its block time, and
certificates and orders sent to its VenueLink through the product's TxSender (one per chain).

Certificates are the hot path (one per account that changed, on every venue), so their calldata
is ABI-encoded with eth_abi directly (web3's encoder costs ~9 ms a certificate), the pre-flight
is one `eth_call` rather than a gas estimate (which runs the BLS check many times over) and the
gas limit is a fixed budget, ample for a link of up to 32 venues; fees are read once per step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak
from web3.types import RPCEndpoint

from offchain.chain.bindings import Chain
from offchain.chain.journal import Outcome, Pending
from offchain.chain.sender import Fees, TxSender
from offchain.errors import ContractRevert
from offchain.link.messages import CERTIFICATE_ABI, Certificate

log = logging.getLogger("marginsync.link")

SUBMIT_TYPES = [CERTIFICATE_ABI, "uint256", "bytes"]
SUBMIT_SELECTOR = keccak(text=f"submitCertificate({','.join(SUBMIT_TYPES)})")[:4]
# submitCertificate of a 3-venue certificate costs ≈ 400k gas the first time an account is
# certified (new storage) and less afterwards: BLS check ≈ 140–170k, the applied entry, the event.
CERTIFICATE_GAS = 1_500_000


def submit_calldata(c: Certificate, signer_bitmap: int, signature: bytes) -> bytes:
    """`VenueLink.submitCertificate(c, signerBitmap, signature)`."""
    return SUBMIT_SELECTOR + abi_encode(SUBMIT_TYPES, [c.as_abi(), signer_bitmap, signature])


def purpose_of(c: Certificate) -> str:
    """The sender's purpose of a certificate's submission (the same on every venue)."""
    return f"certificate:{c.account}:{c.sequence}"


class VenueDelivery:
    """Reads and writes on one venue's chain for the engine."""

    def __init__(
        self,
        chain: Chain,
        link: str,
        oracle_router: str,
        assets: Sequence[int],
        sender: TxSender,
    ) -> None:
        self.chain = chain
        self.link = chain.contract("VenueLink", link)
        self.router = chain.contract("OracleRouter", oracle_router)
        self.assets = tuple(assets)
        self.sender = sender
        self._fees: Fees | None = None

    def prices(self) -> dict[int, int]:
        """The oracle's prices (1e18) of every listed asset; a broken feed's asset is left out
        (an account holding it is not certified until it recovers)."""
        out = {}
        for asset in self.assets:
            price, status = self.router.functions.tryPriceE18(asset).call()
            if status == 0:  # PriceStatus.OK
                out[asset] = int(price)
        return out

    def block_time(self) -> int:
        return int(self.chain.w3.eth.get_block("latest")["timestamp"])

    def new_step(self) -> None:
        """Fees are read again at the next send."""
        self._fees = None

    def submit(self, c: Certificate, signer_bitmap: int, signature: bytes) -> Pending | None:
        data = submit_calldata(c, signer_bitmap, signature)
        return self._send(data, CERTIFICATE_GAS, purpose_of(c))

    def execute(self, fn: Any, purpose: str) -> Pending | None:
        """A committee order (rare): pre-flighted with a gas estimate."""
        try:
            gas = self.chain.gas_limit(fn, self.sender.address, purpose)
        except ContractRevert as exc:
            log.info("%s refused on chain %d: %s", purpose, self.chain.chain_id, exc)
            return None
        return self._send(bytes.fromhex(fn._encode_transaction_data()[2:]), gas, purpose)

    def wait(self, timeout_s: float) -> list[Outcome]:
        return self.sender.wait(timeout_s)

    def _send(self, data: bytes, gas: int, purpose: str) -> Pending | None:
        """Pre-flights with one `eth_call`; None (the revert logged) if it would revert."""
        call = {"from": self.sender.address, "to": self.link.address, "data": "0x" + data.hex()}
        response = self.chain.w3.provider.make_request(
            RPCEndpoint("eth_call"), [call | {"gas": hex(gas)}, "latest"]
        )
        if "error" in response:
            log.info("%s refused on chain %d: %s", purpose, self.chain.chain_id, response["error"])
            return None
        if self._fees is None:
            self._fees = self.sender.fees()
        return self.sender.send(self.link.address, data, gas, purpose=purpose, fees=self._fees)
