"""Up-front balance checks: a key that cannot pay for its transactions is named before any work,
not discovered half-way through a deployment or at the first liquidation."""

from __future__ import annotations

from offchain.chain import Chain, checksum
from offchain.errors import ConfigError

# Gas each role needs to get going, measured on Anvil (`marginsync deploy` uses ≈ 17M) with
# headroom. Fees are priced at the node's current gas price.
DEPLOY_GAS = 25_000_000
# One batch of 100 first writes (≈ 24k gas each: a fresh slot), or several of updates (≈ 6.5k).
ENGINE_GAS = 3_000_000
KEEPER_GAS = 2_000_000  # a handful of liquidations


def require_funds(chain: Chain, address: str, role: str, gas: int, key_hint: str) -> None:
    """Raises a one-line `ConfigError` when `address` cannot pay for `gas` at today's price."""
    balance = int(chain.w3.eth.get_balance(checksum(address)))
    price = int(chain.w3.eth.gas_price)
    need = gas * price
    if balance < need:
        raise ConfigError(
            f"the {role} {checksum(address)} cannot pay for gas: it holds {balance / 1e18:.6g} "
            f"ETH on chain {chain.chain_id} and needs {need / 1e18:.6g} ETH to start "
            f"({gas:,} gas at {price / 1e9:.3g} gwei)",
            f"send ETH to {checksum(address)} on this chain, or set {key_hint} to a funded key",
        )
