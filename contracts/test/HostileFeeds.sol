// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice A Chainlink-style feed that misbehaves on demand (THREATS F01, F02, F04): each of
/// `decimals()` and `latestRoundData()` can answer normally, revert, hit INVALID, return nothing,
/// return too few bytes, flood the caller with return data, return a round id wider than 80 bits,
/// or burn all its gas. Rounds are written whole (round id included, so they can go backwards),
/// and the decimals can change, as a proxy's do when it moves to another aggregator.
/// Test-only: it declares no interface so that it can return what no interface allows.
contract HostileFeed {
    enum Mode {
        NORMAL,
        REVERT,
        INVALID,
        EMPTY,
        SHORT,
        FLOOD,
        WIDE_ROUND_ID,
        BURN_GAS
    }

    Mode public roundMode;
    Mode public decimalsMode;
    uint256 public decimalsValue;
    uint256 public roundId;
    int256 public answer;
    uint256 public startedAt;
    uint256 public updatedAt;

    constructor(uint256 decimals_, int256 answer_) {
        decimalsValue = decimals_;
        setRound(1, answer_, block.timestamp);
    }

    function setModes(Mode decimalsMode_, Mode roundMode_) external {
        decimalsMode = decimalsMode_;
        roundMode = roundMode_;
    }

    function setDecimals(uint256 decimals_) external {
        decimalsValue = decimals_;
    }

    function setRound(uint256 roundId_, int256 answer_, uint256 updatedAt_) public {
        roundId = roundId_;
        answer = answer_;
        startedAt = updatedAt_;
        updatedAt = updatedAt_;
    }

    function decimals() external view returns (uint256) {
        _misbehave(decimalsMode, 1);
        return decimalsValue;
    }

    function latestRoundData() external view returns (uint256, int256, uint256, uint256, uint256) {
        _misbehave(roundMode, 5);
        return (roundId, answer, startedAt, updatedAt, roundId);
    }

    /// @dev Ends the call the way `mode` says, or returns to answer normally. `words` is the
    /// length of a normal reply.
    function _misbehave(Mode mode, uint256 words) internal view {
        if (mode == Mode.NORMAL) return;
        if (mode == Mode.REVERT) revert("HostileFeed: reverts");
        if (mode == Mode.WIDE_ROUND_ID) {
            if (words == 1) return;
            uint256 wide = uint256(type(uint80).max) + 1;
            uint256 a = uint256(answer);
            uint256 s = startedAt;
            uint256 u = updatedAt;
            assembly {
                mstore(0x00, wide)
                mstore(0x20, a)
                mstore(0x40, s)
                mstore(0x60, u)
                mstore(0x80, wide)
                return(0x00, 0xa0)
            }
        }
        assembly {
            switch mode
            case 2 { invalid() }
            case 3 { return(0, 0) }
            // One word short of a full reply (no bytes at all for a one-word reply's half).
            case 4 { return(0, sub(mul(words, 0x20), 0x10)) }
            // 64 KB of return data: a caller that copies it all pays for the memory.
            case 5 { return(0, 0x10000) }
            default {
                for {} 1 {} {}
            }
        }
    }
}
