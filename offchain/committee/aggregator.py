"""The aggregator: asks the members to sign, checks every partial signature against the member's
registered key, keeps what each member signed per sequence (so an equivocation, two different
messages for one sequence, is caught and kept as evidence anyone can check: THREATS G06), and
combines ≥ k partials into the certificate the registry verifies."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from offchain.committee import bls
from offchain.committee.backends import NATIVE, Backend
from offchain.committee.member import Proposal
from offchain.committee.registry import Certificate
from offchain.errors import QuorumNotReached, SigningRefused

log = logging.getLogger(__name__)
MAX_ASKED = 64  # members asked at once: a committee has at most 64 (the registry's bitmap)


class Signer(Protocol):
    def sign(self, sequence: int, message: bytes, proposal: Proposal | None = None) -> bytes: ...


@dataclass(frozen=True)
class Equivocation:
    """Member `member` signed two different messages for `sequence`: both signatures verify."""

    member: int
    sequence: int
    first: tuple[bytes, bytes]
    second: tuple[bytes, bytes]

    def holds(self, public_key: bytes, backend: Backend = NATIVE) -> bool:
        (m1, s1), (m2, s2) = self.first, self.second
        return (
            m1 != m2
            and bls.verify(public_key, m1, s1, backend)
            and bls.verify(public_key, m2, s2, backend)
        )


class Aggregator:
    """Combines partial signatures for a committee whose keys are `public_keys` (registry order)."""

    def __init__(
        self, public_keys: Sequence[bytes], threshold: int, backend: Backend = NATIVE
    ) -> None:
        self.public_keys = list(public_keys)
        self.threshold = threshold
        self.backend = backend
        self._seen: dict[tuple[int, int], tuple[bytes, bytes]] = {}
        self.equivocations: list[Equivocation] = []
        # One pool for every request: starting a thread per member per certificate cost the
        # link engine a tenth of its step (its threads are idle between certificates).
        self._pool = ThreadPoolExecutor(max_workers=MAX_ASKED, thread_name_prefix="aggregator")

    def accept(self, member: int, sequence: int, message: bytes, signature: bytes) -> bool:
        """Whether the partial is valid; a valid partial for another message than the member
        signed before for this sequence is recorded as an equivocation."""
        if not bls.verify(self.public_keys[member], message, signature, self.backend):
            return False
        earlier = self._seen.setdefault((member, sequence), (message, signature))
        if earlier[0] != message:
            evidence = Equivocation(member, sequence, earlier, (message, signature))
            self.equivocations.append(evidence)
            log.warning("member %d equivocated on sequence %d", member, sequence)
        return True

    def certify(
        self,
        sequence: int,
        message: bytes,
        members: Mapping[int, Signer],
        cached_sets: Collection[int] = (),
        proposal: Proposal | None = None,
    ) -> Certificate:
        """Asks `members` (by registry index) in parallel; raises `QuorumNotReached` unless at
        least `threshold` valid partials, none from an equivocating member, come back. When a
        signer set in `cached_sets` (bitmaps cached on the registry) signed in full, the
        certificate names exactly that set: it verifies with no G2 addition on-chain. A
        `proposal` (the message's inputs) goes to every member, which rebuilds the message from
        its own mirrors before it signs."""
        refusals: dict[int, str] = {}

        def ask(index: int) -> tuple[int, bytes | None]:
            signer = members[index]
            try:
                if proposal is None:
                    return index, signer.sign(sequence, message)
                return index, signer.sign(sequence, message, proposal)
            except SigningRefused as exc:
                refusals[index] = exc.cause
                return index, None

        answers = list(self._pool.map(ask, sorted(members)))
        partials: dict[int, bytes] = {}
        for index, signature in answers:
            if signature is None:
                continue
            if not self.accept(index, sequence, message, signature):
                refusals[index] = "invalid partial signature"
            else:
                partials[index] = signature
        cheats = {e.member for e in self.equivocations if e.sequence == sequence}
        for index in cheats & partials.keys():
            del partials[index]
            refusals[index] = "equivocated on this sequence"
        if len(partials) < self.threshold:
            raise QuorumNotReached(sequence, len(partials), self.threshold, refusals)
        bitmap = sum(1 << i for i in partials)
        cached = [c for c in cached_sets if c & ~bitmap == 0 and c.bit_count() >= self.threshold]
        if cached:
            bitmap = cached[0]
        chosen = [s for i, s in partials.items() if bitmap >> i & 1]
        return Certificate(message, bitmap, bls.aggregate_signatures(chosen, self.backend))
