// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title MarginMath
/// @notice Fixed-point helpers with explicit rounding direction. Every caller picks the direction
/// that goes against the account being checked: value it holds rounds down, value it owes rounds up.
/// @dev `WAD` is 1e18 (prices and USD amounts), `BPS` is 1e4 (rates). Products here stay far below
/// 2^255 for every bounded input the clearinghouse accepts (sizes < 2^127, prices < 2^128).
library MarginMath {
    uint256 internal constant WAD = 1e18;
    uint256 internal constant BPS = 1e4;

    /// @dev floor(a * b / d) for a signed `a`: rounds toward negative infinity, so a long's value
    /// and a short's (negative) value both come out no larger than exact.
    function mulDivFloor(int256 a, uint256 b, uint256 d) internal pure returns (int256) {
        if (a >= 0) return int256(uint256(a) * b / d);
        return -int256(mulDivUp(uint256(-a), b, d));
    }

    /// @dev ceil(a * b / d) for a signed `a`: rounds toward positive infinity.
    function mulDivCeil(int256 a, uint256 b, uint256 d) internal pure returns (int256) {
        if (a <= 0) return -int256(uint256(-a) * b / d);
        return int256(mulDivUp(uint256(a), b, d));
    }

    /// @dev ceil(a * b / d) for signed `a` and `b`: a payment rounds up, a receipt (negative) down.
    function mulDivCeilSigned(int256 a, int256 b, uint256 d) internal pure returns (int256) {
        int256 product = a * b;
        // Signed division truncates toward zero: already the ceiling for a negative product.
        if (product <= 0) return product / int256(d);
        return (product - 1) / int256(d) + 1;
    }

    /// @dev ceil(a * b / d) for unsigned values: the floor, plus one when the division leaves a
    /// remainder (then d > 1 and the floor is below 2^255, so the increment cannot overflow; and
    /// unlike `(a * b + d - 1) / d`, no product near 2^256 reverts on the rounding term).
    function mulDivUp(uint256 a, uint256 b, uint256 d) internal pure returns (uint256 q) {
        uint256 product = a * b;
        q = product / d;
        unchecked {
            if (product % d != 0) ++q;
        }
    }

    /// @dev floor(a * b / d) for unsigned values.
    function mulDivDown(uint256 a, uint256 b, uint256 d) internal pure returns (uint256) {
        return a * b / d;
    }

    /// @dev Index of the lowest set bit of a non-zero mask (bit masks of markets, assets). Zero
    /// would never stop: every caller walks a mask while it is non-zero (`mask &= mask - 1`).
    /// @dev Whether `current` lies more than `bandBps` of itself from `signedE18`: the one band
    /// rule by which a signed requirement (an attestation, a certificate) stops being in force.
    function outsideBand(uint256 signedE18, uint256 current, uint256 bandBps) internal pure returns (bool) {
        uint256 gap = signedE18 > current ? signedE18 - current : current - signedE18;
        return gap * BPS > current * bandBps;
    }

    function lowestBit(uint256 mask) internal pure returns (uint256 index) {
        // Ids here are small, so shifting to the set bit beats a binary search; unchecked, because
        // the index stays below 256 (a checked increment tripled the loop's cost).
        unchecked {
            while (mask & 1 == 0) {
                mask >>= 1;
                ++index;
            }
        }
    }

    function popCount(uint256 mask) internal pure returns (uint256 count) {
        // At most 256: unchecked, like `lowestBit`.
        unchecked {
            for (; mask != 0; mask &= mask - 1) {
                ++count;
            }
        }
    }

    function abs(int256 a) internal pure returns (uint256) {
        return a >= 0 ? uint256(a) : uint256(-a);
    }
}
