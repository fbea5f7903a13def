"""Every error marginsync raises on purpose, each with the cause and what to do about it.

The CLI prints `str(error)` as a one-line message; nothing here is ever swallowed.
"""

from __future__ import annotations

from typing import Any


class MarginsyncError(Exception):
    """Base class: `cause` says what went wrong, `fix` says what to do."""

    def __init__(self, cause: str, fix: str = "") -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause}. {fix}".strip() if fix else cause)


class ConfigError(MarginsyncError):
    """Bad settings, CLI input or configuration file."""


class SendRejected(MarginsyncError):
    """The node refused a transaction for a reason that retrying cannot fix."""


class ToolchainError(MarginsyncError):
    """A tool (Anvil, the compiled artifacts) is missing."""


class RpcUnreachable(MarginsyncError):
    def __init__(self, url: str, detail: str = "") -> None:
        super().__init__(
            f"cannot reach an Ethereum node at {url}" + (f" ({detail})" if detail else ""),
            "start one (e.g. `anvil`, or `marginsync demo` which embeds its own) or pass "
            "--rpc-url / set MARGINSYNC_RPC_URL",
        )


class DeploymentMissing(MarginsyncError):
    def __init__(self, chain_id: int, path: str) -> None:
        super().__init__(
            f"no marginsync deployment recorded for chain {chain_id} ({path} does not exist)",
            "run `marginsync deploy` against this chain first",
        )


class DeploymentStale(MarginsyncError):
    """The registry names contracts this chain does not have (a restarted local node)."""

    def __init__(self, chain_id: int, path: str, address: str) -> None:
        super().__init__(
            f"{path} records a deployment that is not on chain {chain_id} (no code at "
            f"{address}; was the node restarted?)",
            "run `marginsync deploy` again, or point --rpc-url at the chain it was deployed to",
        )


class ContractRevert(MarginsyncError):
    """A transaction would revert (found in the pre-flight call) or did revert.

    `name` is the contract's custom error (e.g. `InsufficientMargin`) and `args` its values.
    """

    def __init__(self, name: str, args: dict[str, Any], action: str, fix: str = "") -> None:
        self.name = name
        self.args_by_name = args
        values = ", ".join(f"{k}={v}" for k, v in args.items())
        super().__init__(
            f"{action} would revert with {name}({values})", fix or _FIXES.get(name, "")
        )


class TransactionFailed(MarginsyncError):
    """A sent transaction was mined with status 0 (state changed between pre-flight and mining)."""


# What a user can do about each custom error, shown under the decoded revert.
_FIXES: dict[str, str] = {
    "InsufficientMargin": "deposit more collateral or reduce the position",
    "AccountHealthy": "the account is not liquidatable at current prices; nothing to do",
    "StalePrice": "push a fresh oracle round (`marginsync feed`) or wait for the feed",
    "PriceOutsideBand": "quote a price within the market's band around the oracle price",
    "DepositCapExceeded": "deposit less; the asset's cap is reached",
    "InsufficientBalance": "withdraw at most the balance shown",
    "NotMatcher": "settle trades from an authorised matcher (owner: setMatcher)",
    "Paused": "risk-increasing actions are paused by the guardian; exits stay open",
    "UnknownMarket": "list markets with `marginsync deploy` or use an id from the registry",
    "UnknownCollateral": "use a collateral id from the deployments registry",
    "ERC20InsufficientAllowance": "approve the clearinghouse to spend the token first",
    "ERC20InsufficientBalance": "the wallet holds fewer tokens than the amount",
}


class SigningRefused(MarginsyncError):
    """A committee member would not sign: its view does not reproduce the message, or it already
    signed another message for the same sequence."""


class QuorumNotReached(MarginsyncError):
    def __init__(self, sequence: int, valid: int, threshold: int, refusals: dict[int, str]) -> None:
        self.sequence, self.valid, self.threshold, self.refusals = (
            sequence,
            valid,
            threshold,
            refusals,
        )
        why = "; ".join(f"member {i}: {r}" for i, r in sorted(refusals.items()))
        super().__init__(
            f"sequence {sequence}: {valid} valid partial signatures, {threshold} needed"
            + (f" ({why})" if why else ""),
            "nothing is certified; check the refusing members' views and keys",
        )
