// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @notice A Chainlink-style feed whose rounds the test (or `marginsync feed`) writes directly.
/// One storage slot per round keeps oracle reads cheap in gas benchmarks.
contract MockAggregator is AggregatorV3Interface {
    struct Round {
        int128 answer;
        uint64 updatedAt;
        uint64 roundId;
    }

    uint8 public immutable decimals;
    string public description;
    Round internal _latest;
    uint256 public startedAt;
    bool public reverts;

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        decimals = decimals_;
        description = description_;
        _set(initialAnswer, block.timestamp);
    }

    function version() external pure returns (uint256) {
        return 4;
    }

    /// @notice Publishes a new round stamped with the current block time.
    function setAnswer(int256 answer) external {
        _set(answer, block.timestamp);
    }

    /// @notice Publishes a round with an explicit `updatedAt` (stale or future rounds in tests).
    function setRound(int256 answer, uint256 updatedAt) external {
        _set(answer, updatedAt);
    }

    /// @notice For sequencer-uptime feeds: `startedAt` is when the status last changed.
    function setStartedAt(uint256 startedAt_) external {
        startedAt = startedAt_;
    }

    function setReverts(bool reverts_) external {
        reverts = reverts_;
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        require(!reverts, "MockAggregator: reverts");
        Round memory r = _latest;
        uint256 started = startedAt == 0 ? r.updatedAt : startedAt;
        return (r.roundId, r.answer, started, r.updatedAt, r.roundId);
    }

    function getRoundData(uint80) external view returns (uint80, int256, uint256, uint256, uint80) {
        Round memory r = _latest;
        return (r.roundId, r.answer, r.updatedAt, r.updatedAt, r.roundId);
    }

    function _set(int256 answer, uint256 updatedAt) internal {
        uint64 roundId = _latest.roundId + 1;
        _latest = Round(int128(answer), uint64(updatedAt), roundId);
        emit AnswerUpdated(answer, roundId, updatedAt);
    }
}
