// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The read side of a Chainlink price feed (the standard `AggregatorV3Interface`).
/// @dev Checking `updatedAt` and the sign of `answer` is the consumer's job; the feed promises
/// neither freshness nor positivity.
interface AggregatorV3Interface {
    function decimals() external view returns (uint8);

    function description() external view returns (string memory);

    function version() external view returns (uint256);

    function getRoundData(uint80 roundId)
        external
        view
        returns (uint80 roundId_, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}
