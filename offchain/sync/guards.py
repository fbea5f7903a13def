"""Fail closed: whether the engine may attest at all, and the verifier's rules it selects by.

The engine stops attesting while the signer quorum fails or answers too slowly (D14), while its
clock is off chain time by more than `max_clock_skew_s` (C15), or while fewer than k of its keys
are registered (B09), re-checking periodically and saying why; the contracts then fall back to
static margin (S2). The verifier's parameters (threshold, max age, band, clamp, batch size) are
read at start and again whenever the mirror sees them change.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Callable, Sequence

from web3.contract import Contract

from offchain.attest import Batch, Domain, Entry, digest
from offchain.chain import Chain
from offchain.feeds import check_clock_skew
from offchain.sync import policy
from offchain.sync.config import EngineConfig
from offchain.sync.keys import EngineKeyError, Quorum, Signer, SignerUnavailable
from offchain.sync.metrics import EngineMetrics, event

# What the signer probe signs: issued at time 0, so the verifier refuses it as expired
# (`AttestationExpired`) should it ever reach a chain, and for an account nobody holds.
_PROBE_BATCH = Batch(
    sequence=1,
    issued_at=0,
    price_asset_mask=0,
    prices_e18=(),
    entries=(Entry("0x000000000000000000000000000000000000dEaD", 0, 0, 0),),
)


class Guards:
    """Halts by cause (`halts`), the key quorum, and the policy's verifier-derived thresholds."""

    def __init__(
        self,
        chain: Chain,
        verifier: Contract,
        domain: Domain,
        signers: Sequence[Signer],
        config: EngineConfig,
        clock: Callable[[], float],
        metrics: EngineMetrics,
        progress: Callable[[str], None],
    ) -> None:
        self.chain = chain
        self.verifier = verifier
        self.domain = domain
        self._probe_digest = digest(_PROBE_BATCH, domain)
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.progress = progress
        self._signers = list(signers)
        self.quorum: Quorum | None = None
        self.policy_config: policy.PolicyConfig | None = None
        self.max_batch = config.max_batch_size
        self.halts: dict[str, str] = {}
        self.skew_s = 0.0
        self._last_skew_check = -math.inf
        self._last_signer_probe = -math.inf
        self._sign_pool = concurrent.futures.ThreadPoolExecutor(1, "marginsync-signer")

    def load_verifier_config(self, raise_on_keys: bool = False) -> None:
        """Threshold, registered keys and S1 parameters as the verifier has them now. Called at
        start and whenever the mirror sees a key, threshold or parameter change (B09): a key
        rotated out stops being used at once; fewer than k usable keys stops attesting."""
        threshold = int(self.verifier.functions.threshold().call())
        max_age, band, floor, cap, max_batch = self.verifier.functions.params().call()
        registered = [
            s.address for s in self._signers if self.verifier.functions.isSigner(s.address).call()
        ]
        try:
            self.quorum = Quorum.assemble(self._signers, registered, threshold)
        except EngineKeyError as exc:
            if raise_on_keys:
                raise
            self.halt("keys", str(exc))
        else:
            self.resume("keys")
        self.policy_config = policy.PolicyConfig(
            threshold_bps=self.config.threshold_bps,
            min_change_usd=self.config.min_change_usd,
            refresh_window_s=min(self.config.refresh_window_s, max_age / 2),
            near_health=self.config.near_health,
            max_accounts=min(self.config.max_batch_size, max_batch)
            * self.config.max_batches_per_pass,
            floor_bps=floor,
            cap_bps=cap,
            max_age_s=float(max_age),
            band_bps=float(band),
        )
        self.max_batch = min(self.config.max_batch_size, int(max_batch))

    def chain_time_s(self) -> float:
        """The time the next block will carry: the pending block's, falling back to latest."""
        try:
            return float(self.chain.w3.eth.get_block("pending")["timestamp"])
        except Exception:  # some nodes do not serve a pending block
            return float(self.chain.w3.eth.get_block("latest")["timestamp"])

    def check_clock(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_skew_check < self.config.skew_check_interval_s:
            return
        self._last_skew_check = now
        skew = check_clock_skew(
            self.clock(), self.chain_time_s(), max_skew_s=self.config.max_clock_skew_s
        )
        self.skew_s = skew.skew_s
        self.metrics.clock_skew_s.set(skew.skew_s)
        if skew.ok:
            self.resume("clock")
        else:
            self.halt("clock", skew.describe())

    def probe_signer(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_signer_probe < self.config.signer_retry_s:
            return
        self._last_signer_probe = now
        try:
            self.sign(_PROBE_BATCH, self._probe_digest)
        except SignerUnavailable as exc:
            self.halt("signer", str(exc))
        else:
            self.resume("signer")

    def halt(self, cause: str, reason: str) -> None:
        if self.halts.get(cause) != reason:
            if cause not in self.halts:
                self.metrics.halts.labels(cause).inc()
            self.halts[cause] = reason
            event("attesting_stopped", level=40, cause=cause, reason=reason)
            self.progress(f"NOT ATTESTING ({cause}): {reason}")
        self.metrics.attesting.set(0)

    def resume(self, cause: str) -> None:
        if self.halts.pop(cause, None) is not None:
            event("attesting_resumed", cause=cause)
            self.progress(f"attesting again: {cause} is fine")
        self.metrics.attesting.set(0 if self.halts else 1)

    @property
    def halted(self) -> str | None:
        return "; ".join(f"{c}: {r}" for c, r in self.halts.items()) or None

    def sign(self, batch: Batch, message_digest: bytes) -> bytes:
        """k signatures over `batch` (whose digest is `message_digest`) within
        `signer_timeout_s`, or `SignerUnavailable` (D14)."""
        assert self.quorum is not None
        future = self._sign_pool.submit(self.quorum.sign_batch, batch, self.domain, message_digest)
        try:
            return future.result(timeout=self.config.signer_timeout_s)
        except concurrent.futures.TimeoutError as exc:
            raise SignerUnavailable(
                f"the signer quorum did not answer within {self.config.signer_timeout_s:g} s",
                "check the signers; attesting stays stopped until they answer",
            ) from exc

    def chain_now(self) -> float:
        return self.clock() - self.skew_s

    def close(self) -> None:
        self._sign_pool.shutdown(wait=False, cancel_futures=True)
