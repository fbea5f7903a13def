// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "./AggregatorV3Interface.sol";

/// @title IOracleRouter
/// @notice One validated price per asset, scaled to 1e18 (USD per whole unit of the asset), read
/// from any Chainlink-compatible feed. Consumers trust exactly one number: `priceE18`.
/// @dev Administration is OpenZeppelin `Ownable2Step`. Trust assumptions: the owner lists honest feeds and sensible bounds; a feed may go stale,
/// report zero, negative or future rounds, or pin at a bound, and every such answer is rejected here
/// rather than passed on. No on-chain spot price (AMM reserves) is ever read, so a same-transaction
/// manipulation cannot move a price (THREATS A20). Asset ids are small integers below `MAX_ASSETS`.
interface IOracleRouter {
    /// @notice How one asset is priced.
    /// @param feed The Chainlink-compatible aggregator.
    /// @param heartbeatSeconds A round older than this is stale.
    /// @param feedDecimals The feed's `decimals()`, cached at listing.
    /// @param minPriceE18 Prices at or below this are rejected (a feed pinned at its floor, LUNA 2022).
    /// @param maxPriceE18 Prices at or above this are rejected.
    struct FeedConfig {
        AggregatorV3Interface feed;
        uint32 heartbeatSeconds;
        uint8 feedDecimals;
        uint128 minPriceE18;
        uint128 maxPriceE18;
    }

    /// @notice Why a price could not be used (`OK` when it can).
    enum PriceStatus {
        OK,
        NO_FEED,
        CALL_FAILED,
        NON_POSITIVE,
        STALE,
        FUTURE,
        OUT_OF_BOUNDS
    }

    // ---------------------------------------------------------------- errors
    error UnknownAsset(uint256 asset);
    error AssetIdTooLarge(uint256 asset, uint256 maxAssets);
    error InvalidFeedConfig(address feed, uint256 heartbeatSeconds, uint256 minPriceE18, uint256 maxPriceE18);
    error UnsupportedFeedDecimals(address feed, uint8 decimals);
    error NonPositivePrice(uint256 asset, int256 answer);
    error StalePrice(uint256 asset, uint256 updatedAt, uint256 heartbeatSeconds);
    error FuturePrice(uint256 asset, uint256 updatedAt, uint256 blockTimestamp);
    error PriceOutOfBounds(uint256 asset, uint256 priceE18, uint256 minPriceE18, uint256 maxPriceE18);
    error SequencerDown(uint256 statusChangedAt);
    error SequencerGracePeriod(uint256 restartedAt, uint256 gracePeriodSeconds);

    // ---------------------------------------------------------------- events
    event FeedSet(
        uint256 indexed asset,
        address indexed feed,
        uint256 heartbeatSeconds,
        uint8 feedDecimals,
        uint256 minPriceE18,
        uint256 maxPriceE18
    );
    event SequencerFeedSet(address indexed feed, uint256 gracePeriodSeconds);

    // ---------------------------------------------------------------- admin
    /// @notice Lists or replaces the feed of `asset`. Owner only.
    function setFeed(
        uint256 asset,
        AggregatorV3Interface feed,
        uint32 heartbeatSeconds,
        uint128 minPriceE18,
        uint128 maxPriceE18
    ) external;

    /// @notice Sets the optional L2 sequencer-uptime feed (answer 0 = up, 1 = down) and the grace
    /// period after a restart during which liquidations and risk-increasing actions are refused.
    /// `address(0)` disables the check (L1). Owner only.
    function setSequencerFeed(AggregatorV3Interface feed, uint32 gracePeriodSeconds) external;

    // ---------------------------------------------------------------- views
    /// @notice Maximum number of assets; asset ids lie in [0, MAX_ASSETS).
    function MAX_ASSETS() external view returns (uint256);

    function feedConfig(uint256 asset) external view returns (FeedConfig memory);

    /// @notice The validated price of `asset`, 1e18-scaled. Reverts with the reason it is unusable.
    function priceE18(uint256 asset) external view returns (uint256);

    /// @notice Validated prices of every asset whose bit is set in `assetMask`, in an array indexed
    /// by asset id (length `MAX_ASSETS`, zero where not asked). Reverts if any is unusable.
    function pricesE18(uint256 assetMask) external view returns (uint256[] memory prices);

    /// @notice Never reverts: the price and whether (and why not) it is usable. For keepers' views.
    function tryPriceE18(uint256 asset) external view returns (uint256 priceE18_, PriceStatus status);

    /// @notice Reverts with `SequencerDown` or `SequencerGracePeriod` unless the L2 sequencer is up
    /// and past its grace period. A no-op where no sequencer feed is set.
    function checkSequencer() external view;

    /// @notice Non-reverting form of `checkSequencer`.
    function sequencerOk() external view returns (bool);
}
