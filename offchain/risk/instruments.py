"""Instruments (perpetuals, European options) and the sparse account × instrument position matrix.

Layout
------
* `Instruments` is a struct of arrays, one row per instrument: kind (perp/call/put), the index of
  its underlying, strike and expiry (NaN for perps). Options settle on the same price feed as the
  perp of their underlying, so an on-chain options market can reuse these rows unchanged.
* `Positions` is the position matrix in COO form: three equal-length arrays `account_idx`,
  `instrument_idx`, `size` (signed, in units of the underlying; long > 0). Entries for the same
  (account, instrument) pair are netted (summed). `n_accounts` fixes the matrix height so accounts
  without positions still get a (zero) requirement.
* `PositionBook` is the engine's precomputed view of a `Positions`: netted, zero sizes dropped, and
  sorted by (account, underlying, instrument) so every (account, underlying) "group" is a
  contiguous slice. Group sums are then one `np.add.reduceat` with no Python loop over accounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray

from offchain.risk.checks import (
    BoolArray,
    FloatArray,
    IntArray,
    RiskInputError,
    as_float_array,
    as_index_array,
    bincount_sum,
)

SECONDS_PER_DAY = 86_400.0
SECONDS_PER_YEAR = 365.0 * SECONDS_PER_DAY  # option-market convention (ACT/365)


class InstrumentKind(IntEnum):
    PERP = 0
    CALL = 1
    PUT = 2


@dataclass(frozen=True)
class Instruments:
    """One row per instrument; build with `Instruments.build`, which validates."""

    ids: tuple[str, ...]
    underlyings: tuple[str, ...]
    kind: NDArray[np.int8]
    underlying_idx: IntArray
    strike_usd: FloatArray
    expiry_s: FloatArray

    @classmethod
    def build(
        cls,
        underlyings: Sequence[str],
        ids: Sequence[str],
        kinds: Sequence[InstrumentKind | str],
        underlying_of: Sequence[str],
        strike_usd: ArrayLike | None = None,
        expiry_s: ArrayLike | None = None,
    ) -> Instruments:
        """Validate and pack instrument rows.

        `kinds` accepts `InstrumentKind` or the strings "perp", "call", "put". `strike_usd` and
        `expiry_s` (unix seconds) are required for options and ignored (stored as NaN) for perps.
        """
        n = len(ids)
        if len(set(underlyings)) != len(underlyings):
            raise RiskInputError("underlyings must be unique names; remove the duplicate")
        if len(set(ids)) != n:
            raise RiskInputError("instrument ids must be unique; remove the duplicate id")
        if len(kinds) != n or len(underlying_of) != n:
            raise RiskInputError(
                f"kinds ({len(kinds)}) and underlying_of ({len(underlying_of)}) must have one "
                f"entry per instrument id ({n})"
            )
        kind = np.array([_parse_kind(k, ids[i]) for i, k in enumerate(kinds)], dtype=np.int8)
        position_of = {name: i for i, name in enumerate(underlyings)}
        unknown = [u for u in underlying_of if u not in position_of]
        if unknown:
            raise RiskInputError(
                f"underlying_of names unknown underlyings {sorted(set(unknown))}; "
                f"add them to underlyings {list(underlyings)}"
            )
        underlying_idx = np.array([position_of[u] for u in underlying_of], dtype=np.intp)
        is_option = kind != InstrumentKind.PERP
        strike = _option_column("strike_usd", strike_usd, n, is_option, ids)
        expiry = _option_column("expiry_s", expiry_s, n, is_option, ids)
        if np.any(strike[is_option] <= 0.0):
            bad = [ids[int(i)] for i in np.flatnonzero(is_option & ~(strike > 0.0))]
            raise RiskInputError(f"strike_usd must be > 0 for options; bad for {bad[:5]}")
        return cls(tuple(ids), tuple(underlyings), kind, underlying_idx, strike, expiry)

    @property
    def n_instruments(self) -> int:
        return len(self.ids)

    @property
    def n_underlyings(self) -> int:
        return len(self.underlyings)

    @property
    def is_option(self) -> BoolArray:
        return np.asarray(self.kind != InstrumentKind.PERP)

    @property
    def is_call(self) -> BoolArray:
        return np.asarray(self.kind == InstrumentKind.CALL)

    def index_of(self, instrument_ids: Sequence[str]) -> IntArray:
        """Map instrument ids to row indices; unknown ids raise `RiskInputError`."""
        position_of = {iid: i for i, iid in enumerate(self.ids)}
        unknown = sorted({iid for iid in instrument_ids if iid not in position_of})
        if unknown:
            raise RiskInputError(
                f"unknown instrument ids {unknown[:5]}; list them in Instruments.build first"
            )
        return np.array([position_of[iid] for iid in instrument_ids], dtype=np.intp)


def _parse_kind(kind: InstrumentKind | str, iid: str) -> InstrumentKind:
    if isinstance(kind, InstrumentKind):
        return kind
    try:
        return InstrumentKind[str(kind).upper()]
    except KeyError:
        raise RiskInputError(
            f"kind of instrument {iid!r} is {kind!r}; use 'perp', 'call' or 'put'"
        ) from None


def _option_column(
    name: str, values: ArrayLike | None, n: int, is_option: BoolArray, ids: Sequence[str]
) -> FloatArray:
    if values is None:
        if np.any(is_option):
            raise RiskInputError(f"{name} is required when there are options")
        return np.full(n, np.nan)
    raw = np.asarray(values, dtype=np.float64)
    if raw.shape != (n,):
        raise RiskInputError(f"{name} must have shape ({n},), got {raw.shape}")
    missing = is_option & ~np.isfinite(raw)
    if np.any(missing):
        bad = [ids[int(i)] for i in np.flatnonzero(missing)]
        raise RiskInputError(f"{name} must be finite for every option; missing for {bad[:5]}")
    return np.where(is_option, raw, np.nan)


@dataclass(frozen=True)
class Positions:
    """COO position matrix: entry k says account `account_idx[k]` holds `size[k]` units of
    instrument `instrument_idx[k]` (signed; duplicates are summed)."""

    n_accounts: int
    account_idx: IntArray
    instrument_idx: IntArray
    size: FloatArray

    @classmethod
    def build(
        cls,
        n_accounts: int,
        account_idx: ArrayLike,
        instrument_idx: ArrayLike,
        size: ArrayLike,
        n_instruments: int,
    ) -> Positions:
        if n_accounts < 0:
            raise RiskInputError(f"n_accounts must be >= 0, got {n_accounts}")
        accounts = as_index_array("account_idx", account_idx, upper=n_accounts)
        instruments = as_index_array("instrument_idx", instrument_idx, upper=n_instruments)
        sizes = as_float_array("size", size, ndim=1)
        if not (accounts.shape == instruments.shape == sizes.shape):
            raise RiskInputError(
                "account_idx, instrument_idx and size must have equal length; got "
                f"{accounts.shape[0]}, {instruments.shape[0]}, {sizes.shape[0]}"
            )
        return cls(n_accounts, accounts, instruments, sizes)

    @classmethod
    def from_ids(
        cls,
        instruments: Instruments,
        n_accounts: int,
        account_idx: ArrayLike,
        instrument_ids: Sequence[str],
        size: ArrayLike,
    ) -> Positions:
        """Like `build`, with instruments named by id (unknown ids raise)."""
        index = instruments.index_of(instrument_ids)
        return cls.build(n_accounts, account_idx, index, size, instruments.n_instruments)


@dataclass(frozen=True)
class PositionBook:
    """Netted positions sorted by (account, underlying, instrument), plus group boundaries.

    A group is one (account, underlying) pair with at least one non-zero position.
    """

    n_accounts: int
    n_underlyings: int
    account_idx: IntArray  # per position
    instrument_idx: IntArray  # per position
    underlying_idx: IntArray  # per position
    size: FloatArray  # per position, non-zero
    group_start: IntArray  # per group: first position of the group
    group_of_position: IntArray  # per position: its group
    group_account: IntArray  # per group
    group_underlying: IntArray  # per group

    @property
    def n_groups(self) -> int:
        return int(self.group_start.shape[0])

    def sum_by_group(self, values: FloatArray) -> FloatArray:
        """Sum per-position rows (1-D or 2-D along axis 0) within each group."""
        if self.n_groups == 0:
            return np.zeros((0, *values.shape[1:]))
        return np.asarray(np.add.reduceat(values, self.group_start, axis=0), dtype=np.float64)

    def subset(self, keep: BoolArray) -> PositionBook:
        """The book restricted to some positions; order (hence grouping) is preserved."""
        return _grouped(
            self.n_accounts,
            self.n_underlyings,
            self.account_idx[keep],
            self.instrument_idx[keep],
            self.underlying_idx[keep],
            self.size[keep],
        )


def build_book(instruments: Instruments, positions: Positions) -> PositionBook:
    """Net, drop zeros and sort positions so (account, underlying) groups are contiguous."""
    if (
        positions.instrument_idx.size
        and positions.instrument_idx.max() >= instruments.n_instruments
    ):
        raise RiskInputError("positions refer to instruments beyond the Instruments table")
    n_inst = instruments.n_instruments
    n_und = instruments.n_underlyings
    underlying = instruments.underlying_idx[positions.instrument_idx]
    # One int64 key orders by account, then underlying, then instrument; np.unique both sorts
    # and finds duplicate (account, instrument) entries to net.
    key = (positions.account_idx.astype(np.int64) * n_und + underlying) * n_inst
    key = key + positions.instrument_idx
    unique_key, inverse = np.unique(key, return_inverse=True)
    netted = bincount_sum(inverse.ravel(), weights=positions.size, minlength=unique_key.size)
    keep = netted != 0.0
    unique_key, netted = unique_key[keep], netted[keep]
    instrument = (unique_key % n_inst).astype(np.intp)
    group_key = unique_key // n_inst
    return _grouped(
        positions.n_accounts,
        n_und,
        (group_key // n_und).astype(np.intp),
        instrument,
        (group_key % n_und).astype(np.intp),
        netted.astype(np.float64),
    )


def _grouped(
    n_accounts: int,
    n_underlyings: int,
    account: IntArray,
    instrument: IntArray,
    underlying: IntArray,
    size: FloatArray,
) -> PositionBook:
    """Attach group boundaries to positions already sorted by (account, underlying)."""
    is_new_group = np.ones(account.shape, dtype=bool)
    is_new_group[1:] = (account[1:] != account[:-1]) | (underlying[1:] != underlying[:-1])
    group_start = np.flatnonzero(is_new_group).astype(np.intp)
    return PositionBook(
        n_accounts=n_accounts,
        n_underlyings=n_underlyings,
        account_idx=account,
        instrument_idx=instrument,
        underlying_idx=underlying,
        size=size,
        group_start=group_start,
        group_of_position=(np.cumsum(is_new_group) - 1).astype(np.intp),
        group_account=account[group_start],
        group_underlying=underlying[group_start],
    )
