"""The proof's public input and parameter layout, bit for bit (docs/proofs.md).

Each Groth16 public input costs the verifier an elliptic-curve multiplication (≈ 6.8k gas), so the
public data is packed: words[0] is the model hash, then one stream of bits cut into 253-bit words
(below log2 of the field, so a word never wraps), least significant bit first:

    8 × price (64 bits, 1e-8 USD)
    per account: address (160) | MM (64, µUSD) | IM (64, µUSD) | K × slot
    slot: asset (3) | short (1) | |net size| (96 bits, 1e-18 units)

The model's parameters travel the same way in private words whose Poseidon hash is words[0]:
33 × (shock + 10,000) (15 bits each, bps) | perp contingency (14) | floor fraction (14) |
IM factor (17) | 28 × (1 + ρ) per asset pair u < v (15 bits each, bps).

The same layout is written by circuits/margin.circom (unpacking) and
contracts/proof/MarginProofInputs.sol (packing); a proof verifies only if all three agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from offchain.errors import MarginsyncError

ASSETS = 8
ASSET_BITS = 3
PRICE_BITS = 64
ADDRESS_BITS = 160
REQUIREMENT_BITS = 64
SIZE_BITS = 96
WORD_BITS = 253
SCENARIOS = 33
SHOCK_BITS = 15
SHOCK_OFFSET = 10_000
RATE_BITS = 14
FACTOR_BITS = 17
CREDIT_BITS = 15
PAIRS = tuple((u, v) for u in range(ASSETS) for v in range(u + 1, ASSETS))
SLOT_BITS = ASSET_BITS + 1 + SIZE_BITS


class LayoutError(MarginsyncError):
    """A value does not fit its field: the circuit cannot prove it (refused, never wrapped)."""


@dataclass(frozen=True)
class CircuitShape:
    """One compiled circuit: `accounts` accounts of up to `slots` underlyings each."""

    name: str
    accounts: int
    slots: int

    @property
    def stream_bits(self) -> int:
        account_bits = ADDRESS_BITS + 2 * REQUIREMENT_BITS + self.slots * SLOT_BITS
        return ASSETS * PRICE_BITS + self.accounts * account_bits

    @property
    def public_inputs(self) -> int:
        return 1 + words_for(self.stream_bits)


# Keep in step with circuits/account.circom and circuits/batch.circom (a test compares them with
# the verification keys the build produced).
ACCOUNT = CircuitShape("account", accounts=1, slots=8)
BATCH = CircuitShape("batch", accounts=32, slots=2)
SHAPES = {shape.name: shape for shape in (ACCOUNT, BATCH)}


def words_for(bits: int) -> int:
    return -(-bits // WORD_BITS)


class BitStream:
    """Fields appended least significant bit first; `words()` cuts the stream into WORD_BITS."""

    def __init__(self) -> None:
        self._value = 0
        self.length = 0

    def push(self, value: int, bits: int, what: str) -> None:
        if not 0 <= value < 1 << bits:
            raise LayoutError(
                f"{what} = {value} does not fit in {bits} bits",
                "the circuit cannot prove it; see docs/proofs.md for the ranges",
            )
        self._value |= value << self.length
        self.length += bits

    def words(self) -> list[int]:
        mask = (1 << WORD_BITS) - 1
        return [(self._value >> (WORD_BITS * i)) & mask for i in range(words_for(self.length))]


@dataclass(frozen=True)
class Slot:
    """One underlying of an account: its oracle asset id and net signed size (1e-18 units)."""

    asset: int
    size: int


@dataclass(frozen=True)
class AccountStatement:
    """What a proof says about one account: its slots and the requirement they imply."""

    address: str
    slots: tuple[Slot, ...]
    mm_micro_usd: int
    im_micro_usd: int


EMPTY_ACCOUNT = AccountStatement("0x" + "00" * 20, (), 0, 0)


def public_words(
    shape: CircuitShape,
    model_hash: int,
    prices_e8: Sequence[int],
    accounts: Sequence[AccountStatement],
) -> list[int]:
    """The proof's public inputs; missing accounts are padded with the empty account."""
    if len(prices_e8) != ASSETS:
        raise LayoutError(f"{len(prices_e8)} prices given", f"give one per asset 0..{ASSETS - 1}")
    if len(accounts) > shape.accounts:
        raise LayoutError(
            f"{len(accounts)} accounts for the {shape.name} circuit",
            f"split them into proofs of at most {shape.accounts}",
        )
    stream = BitStream()
    for asset, price in enumerate(prices_e8):
        stream.push(price, PRICE_BITS, f"price of asset {asset}")
    padded = [*accounts, *[EMPTY_ACCOUNT] * (shape.accounts - len(accounts))]
    for account in padded:
        _push_account(stream, shape, account)
    return [model_hash, *stream.words()]


def _push_account(stream: BitStream, shape: CircuitShape, account: AccountStatement) -> None:
    if len(account.slots) > shape.slots:
        raise LayoutError(
            f"account {account.address} has positions on {len(account.slots)} underlyings",
            f"the {shape.name} circuit takes at most {shape.slots}; prove it with a larger one",
        )
    stream.push(int(account.address, 16), ADDRESS_BITS, "address")
    stream.push(account.mm_micro_usd, REQUIREMENT_BITS, f"MM of {account.address} (µUSD)")
    stream.push(account.im_micro_usd, REQUIREMENT_BITS, f"IM of {account.address} (µUSD)")
    for slot in [*account.slots, *[Slot(0, 0)] * (shape.slots - len(account.slots))]:
        stream.push(slot.asset, ASSET_BITS, f"asset id of {account.address}")
        stream.push(int(slot.size < 0), 1, "side")
        stream.push(abs(slot.size), SIZE_BITS, f"size of {account.address} in asset {slot.asset}")


def param_words(
    shocks_bps: Iterable[int],
    perp_contingency_bps: int,
    floor_bps: int,
    im_factor_bps: int,
    credit_bps: Iterable[int],
) -> list[int]:
    stream = BitStream()
    for shock in shocks_bps:
        stream.push(shock + SHOCK_OFFSET, SHOCK_BITS, "spot shock + 10,000 (bps)")
    stream.push(perp_contingency_bps, RATE_BITS, "perp contingency (bps)")
    stream.push(floor_bps, RATE_BITS, "floor fraction (bps)")
    stream.push(im_factor_bps, FACTOR_BITS, "IM factor (bps)")
    for credit in credit_bps:
        stream.push(credit, CREDIT_BITS, "1 + ρ (bps)")
    return stream.words()
