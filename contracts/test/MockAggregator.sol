// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @notice A Chainlink-style feed whose rounds the test (or `marginsync feed`) writes directly.
/// The whole round, flags included, lives in one storage slot so a read costs what a production
/// aggregator's read costs at most, and gas benchmarks do not flatter or punish the consumer.
contract MockAggregator is AggregatorV3Interface {
    struct Round {
        int96 answer;
        uint64 updatedAt;
        uint32 roundId;
        uint56 startedAt;
        bool reverts;
    }

    uint8 public immutable decimals;
    string public description;
    Round internal _latest;

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
        _latest.startedAt = uint56(startedAt_);
    }

    function setReverts(bool reverts_) external {
        _latest.reverts = reverts_;
    }

    function reverts() external view returns (bool) {
        return _latest.reverts;
    }

    function startedAt() external view returns (uint256) {
        return _latest.startedAt;
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        Round memory r = _latest;
        require(!r.reverts, "MockAggregator: reverts");
        return (r.roundId, r.answer, r.startedAt, r.updatedAt, r.roundId);
    }

    function getRoundData(uint80) external view returns (uint80, int256, uint256, uint256, uint80) {
        Round memory r = _latest;
        return (r.roundId, r.answer, r.updatedAt, r.updatedAt, r.roundId);
    }

    /// @dev Answers beyond int96 are not representable here; tests of absurd answers use 18-decimal
    /// feeds well inside it. A new round resets `startedAt` to its own time and keeps the flags.
    function _set(int256 answer, uint256 updatedAt) internal {
        Round memory r = _latest;
        uint32 roundId = r.roundId + 1;
        _latest = Round(int96(answer), uint64(updatedAt), roundId, uint56(updatedAt), r.reverts);
        emit AnswerUpdated(answer, roundId, updatedAt);
    }
}
