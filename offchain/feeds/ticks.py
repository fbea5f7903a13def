"""The tick: one price print from one source, and its JSON wire format.

Inside the process a tick is a small frozen dataclass (cheap to build at tens of thousands per
second); where ticks cross a boundary (a websocket) they are validated by `TickMessage` first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


@dataclass(frozen=True, slots=True)
class Tick:
    """`price_usd` as printed by `source` at `ts_s` (Unix seconds, the source's own clock).

    `confidence_usd` is the half-width of the source's confidence interval (Pyth-style), or None
    for sources that publish none (Chainlink, most exchanges).
    """

    symbol: str
    price_usd: float
    ts_s: float
    source: str
    confidence_usd: float | None = None


class TickMessage(BaseModel):
    """A tick on the wire: `{"symbol": "ETH", "price": 3000.5, "ts": 1700000000.0, "source": "x"}`,
    optionally with `"confidence"` (USD). Unknown keys are ignored so feeds may add fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    symbol: str = Field(min_length=1, max_length=32)
    price: float = Field(gt=0)
    ts: float = Field(ge=0)
    source: str = Field(min_length=1, max_length=64)
    confidence: float | None = Field(default=None, ge=0)

    @field_validator("price", "ts", "confidence")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        # JSON has no NaN/Infinity, but Python's parser accepts them; a NaN price would slip
        # through every comparison-based guard downstream.
        if v is not None and not math.isfinite(v):
            raise ValueError("must be finite")
        return v

    def to_tick(self) -> Tick:
        return Tick(self.symbol, self.price, self.ts, self.source, self.confidence)


def parse_tick_message(raw: str | bytes) -> Tick | None:
    """The tick in a JSON message, or None when the message is malformed."""
    try:
        return TickMessage.model_validate_json(raw).to_tick()
    except ValidationError:
        return None


def encode_tick(tick: Tick) -> str:
    """The wire form of `tick` (the inverse of `parse_tick_message`)."""
    msg = TickMessage(
        symbol=tick.symbol,
        price=tick.price_usd,
        ts=tick.ts_s,
        source=tick.source,
        confidence=tick.confidence_usd,
    )
    return msg.model_dump_json(exclude_none=True)
