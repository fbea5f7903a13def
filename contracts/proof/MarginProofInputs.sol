// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title MarginProofInputs
/// @notice The proof's public input layout (docs/proofs.md), as circuits/margin.circom unpacks it
/// and offchain/prove/layout.py packs it: input[0] is the model hash, then one stream of fields,
/// least significant bit first, cut into 253-bit words (below the scalar field, so none wraps):
/// 8 prices (64 bits, 1e-8 USD); per account: address (160), MM (64), IM (64), then per slot
/// asset (3), short (1), |net size| (96).
library MarginProofInputs {
    uint256 internal constant ASSETS = 8;
    uint256 internal constant ASSET_BITS = 3;
    uint256 internal constant PRICE_BITS = 64;
    uint256 internal constant ADDRESS_BITS = 160;
    uint256 internal constant REQUIREMENT_BITS = 64;
    uint256 internal constant SIZE_BITS = 96;
    uint256 internal constant WORD_BITS = 253;

    /// @dev A stream being packed: `words` is pre-sized; `next` is the word being filled.
    struct Stream {
        uint256[] words;
        uint256 index;
        uint256 used;
    }

    function publicInputCount(uint256 accounts, uint256 slots) internal pure returns (uint256) {
        uint256 accountBits = ADDRESS_BITS + 2 * REQUIREMENT_BITS + slots * (ASSET_BITS + 1 + SIZE_BITS);
        uint256 bits = ASSETS * PRICE_BITS + accounts * accountBits;
        return 1 + (bits + WORD_BITS - 1) / WORD_BITS;
    }

    /// @dev A stream whose words[0] is `modelHash`, sized for the circuit.
    function start(uint256 modelHash, uint256 accounts, uint256 slots) internal pure returns (Stream memory s) {
        s.words = new uint256[](publicInputCount(accounts, slots));
        s.words[0] = modelHash;
        s.index = 1;
    }

    /// @dev Appends `value` (< 2^bits, checked by the caller) as the next `bits` bits.
    function push(Stream memory s, uint256 value, uint256 bits) internal pure {
        uint256 room = WORD_BITS - s.used;
        if (bits < room) {
            s.words[s.index] |= value << s.used;
            s.used += bits;
            return;
        }
        s.words[s.index] |= (value & ((1 << room) - 1)) << s.used;
        s.index += 1;
        s.used = bits - room;
        if (s.used > 0) s.words[s.index] = value >> room;
    }

    /// @dev One slot: an asset id and its signed net size.
    function pushSlot(Stream memory s, uint256 asset, int256 netSize) internal pure {
        push(s, asset, ASSET_BITS);
        push(s, netSize < 0 ? 1 : 0, 1);
        push(s, netSize < 0 ? uint256(-netSize) : uint256(netSize), SIZE_BITS);
    }
}
