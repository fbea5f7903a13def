"""After a restart: finish what the outbox holds, never sign or send one batch twice (D11).

Rows whose transaction the sender's journal holds follow it: its receipt if it was mined, else
the same raw bytes re-broadcast (`Delivery.recover`). Other `signed` rows are sent; `persisted`
rows are signed (same payload, same digest, checked first) and sent. Rows too old to be accepted
on-chain are marked `expired` and never sent.
"""

from __future__ import annotations

from collections.abc import Callable

from offchain.attest import Batch
from offchain.sync.batching import Batcher
from offchain.sync.delivery import Delivery, Outcome
from offchain.sync.guards import Guards
from offchain.sync.metrics import event
from offchain.sync.outbox import Outbox, State

# A batch this close to the verifier's max age is not worth sending: it would land expired.
EXPIRY_MARGIN_S = 5


def expired(batch: Batch, guards: Guards) -> bool:
    assert guards.policy_config is not None
    age = guards.chain_now() - batch.issued_at
    return age > guards.policy_config.max_age_s - EXPIRY_MARGIN_S


def recover(
    outbox: Outbox,
    delivery: Delivery,
    batcher: Batcher,
    guards: Guards,
    *,
    receipt_timeout_s: float,
    record: Callable[[Outcome], None],
    progress: Callable[[str], None],
) -> list[Outcome]:
    rows = outbox.open_rows()
    outcomes, to_send = delivery.recover(rows)
    if not rows:
        return outcomes
    event("outbox_recover", rows=len(rows), sequences=",".join(str(r.sequence) for r in rows))
    for row in to_send:
        if expired(row.batch, guards):
            outbox.mark_done(row.sequence, State.EXPIRED, "too old to send after restart")
            outcomes.append(Outcome(row.sequence, State.EXPIRED, detail="expired at restart"))
            continue
        if row.state == State.PERSISTED:
            if batcher.digest(row.batch) != row.digest:  # sign only what the row says it is
                outbox.mark_done(row.sequence, State.FAILED, "payload/digest mismatch")
                outcomes.append(Outcome(row.sequence, State.FAILED, detail="corrupt row"))
                continue
            outbox.mark_signed(row.sequence, guards.sign(row.batch, row.digest))
        current = outbox.get(row.sequence)
        assert current is not None
        if (outcome := delivery.send(current)) is not None:
            outcomes.append(outcome)
    outcomes.extend(delivery.wait(receipt_timeout_s))
    for o in outcomes:
        record(o)
    progress(f"recovered {len(outcomes)} batch(es) from the outbox")
    return outcomes
