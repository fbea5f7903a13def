// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {IOracleRouter} from "./interfaces/IOracleRouter.sol";

/// @title OracleRouter
/// @notice Validates Chainlink-compatible feeds once so consumers can trust a single 1e18 number.
contract OracleRouter is IOracleRouter, Ownable2Step {
    // ================================================================ STORAGE
    /// @inheritdoc IOracleRouter
    uint256 public constant MAX_ASSETS = 32;

    /// @dev Feeds report at most 18 decimals here, so normalising is always a multiplication.
    uint8 internal constant MAX_FEED_DECIMALS = 18;

    mapping(uint256 asset => FeedConfig) internal _feeds;

    AggregatorV3Interface public sequencerFeed;
    uint32 public sequencerGracePeriodSeconds;

    // ================================================================ CONSTRUCTOR
    constructor(address owner_) Ownable(owner_) {}

    // ================================================================ EXTERNAL
    /// @inheritdoc IOracleRouter
    function setFeed(
        uint256 asset,
        AggregatorV3Interface feed,
        uint32 heartbeatSeconds,
        uint128 minPriceE18,
        uint128 maxPriceE18
    ) external onlyOwner {
        if (asset >= MAX_ASSETS) revert AssetIdTooLarge(asset, MAX_ASSETS);
        if (address(feed) == address(0) || heartbeatSeconds == 0 || minPriceE18 == 0 || minPriceE18 >= maxPriceE18) {
            revert InvalidFeedConfig(address(feed), heartbeatSeconds, minPriceE18, maxPriceE18);
        }
        uint8 feedDecimals = feed.decimals();
        if (feedDecimals > MAX_FEED_DECIMALS) revert UnsupportedFeedDecimals(address(feed), feedDecimals);
        _feeds[asset] = FeedConfig(feed, heartbeatSeconds, feedDecimals, minPriceE18, maxPriceE18);
        emit FeedSet(asset, address(feed), heartbeatSeconds, feedDecimals, minPriceE18, maxPriceE18);
    }

    /// @inheritdoc IOracleRouter
    function setSequencerFeed(AggregatorV3Interface feed, uint32 gracePeriodSeconds) external onlyOwner {
        sequencerFeed = feed;
        sequencerGracePeriodSeconds = gracePeriodSeconds;
        emit SequencerFeedSet(address(feed), gracePeriodSeconds);
    }

    // ================================================================ VIEWS
    /// @inheritdoc IOracleRouter
    function feedConfig(uint256 asset) external view returns (FeedConfig memory) {
        return _feeds[asset];
    }

    /// @inheritdoc IOracleRouter
    function priceE18(uint256 asset) external view returns (uint256) {
        return _validatedPrice(asset);
    }

    /// @inheritdoc IOracleRouter
    function pricesE18(uint256 assetMask) external view returns (uint256[] memory prices) {
        prices = new uint256[](MAX_ASSETS);
        for (uint256 asset; assetMask != 0; ++asset) {
            if (assetMask & 1 == 1) prices[asset] = _validatedPrice(asset);
            assetMask >>= 1;
        }
    }

    /// @inheritdoc IOracleRouter
    function tryPriceE18(uint256 asset) external view returns (uint256 priceE18_, PriceStatus status) {
        FeedConfig memory cfg = _feeds[asset];
        if (address(cfg.feed) == address(0)) return (0, PriceStatus.NO_FEED);
        try cfg.feed.latestRoundData() returns (uint80, int256 answer, uint256, uint256 updatedAt, uint80) {
            return _assess(cfg, answer, updatedAt);
        } catch {
            return (0, PriceStatus.CALL_FAILED);
        }
    }

    /// @inheritdoc IOracleRouter
    function checkSequencer() external view {
        AggregatorV3Interface feed = sequencerFeed;
        if (address(feed) == address(0)) return;
        (, int256 answer, uint256 startedAt,,) = feed.latestRoundData();
        // startedAt == 0 is an uninitialised round (Chainlink's early Arbitrum feed): not proof of uptime.
        if (answer != 0 || startedAt == 0) revert SequencerDown(startedAt);
        if (block.timestamp < startedAt + sequencerGracePeriodSeconds) {
            revert SequencerGracePeriod(startedAt, sequencerGracePeriodSeconds);
        }
    }

    /// @inheritdoc IOracleRouter
    function sequencerOk() external view returns (bool) {
        AggregatorV3Interface feed = sequencerFeed;
        if (address(feed) == address(0)) return true;
        try feed.latestRoundData() returns (uint80, int256 answer, uint256 startedAt, uint256, uint80) {
            return answer == 0 && startedAt != 0 && block.timestamp >= startedAt + sequencerGracePeriodSeconds;
        } catch {
            return false;
        }
    }

    // ================================================================ INTERNAL
    /// @dev The reverting path. The feed call is not wrapped in try/catch: a call starved of gas
    /// (or failing any other way) reverts the whole transaction instead of taking a fallback branch
    /// (THREATS C06).
    function _validatedPrice(uint256 asset) internal view returns (uint256) {
        FeedConfig memory cfg = _feeds[asset];
        if (address(cfg.feed) == address(0)) revert UnknownAsset(asset);
        (, int256 answer,, uint256 updatedAt,) = cfg.feed.latestRoundData();
        (uint256 price, PriceStatus status) = _assess(cfg, answer, updatedAt);
        if (status == PriceStatus.OK) return price;
        if (status == PriceStatus.NON_POSITIVE) revert NonPositivePrice(asset, answer);
        if (status == PriceStatus.FUTURE) revert FuturePrice(asset, updatedAt, block.timestamp);
        if (status == PriceStatus.STALE) revert StalePrice(asset, updatedAt, cfg.heartbeatSeconds);
        revert PriceOutOfBounds(asset, price, cfg.minPriceE18, cfg.maxPriceE18);
    }

    function _assess(FeedConfig memory cfg, int256 answer, uint256 updatedAt)
        internal
        view
        returns (uint256 price, PriceStatus status)
    {
        if (answer <= 0) return (0, PriceStatus.NON_POSITIVE);
        if (updatedAt > block.timestamp) return (0, PriceStatus.FUTURE);
        if (block.timestamp - updatedAt > cfg.heartbeatSeconds) return (0, PriceStatus.STALE);
        uint256 scale = 10 ** (MAX_FEED_DECIMALS - cfg.feedDecimals);
        // An absurd answer must not overflow the scaling (a revert here would break tryPriceE18).
        if (uint256(answer) > type(uint256).max / scale) return (type(uint256).max, PriceStatus.OUT_OF_BOUNDS);
        price = uint256(answer) * scale;
        // A bound is where a feed pins when the market leaves its range (Chainlink's min/maxAnswer,
        // LUNA 2022), so a price AT a bound is as untrustworthy as one beyond it.
        if (price <= cfg.minPriceE18 || price >= cfg.maxPriceE18) return (price, PriceStatus.OUT_OF_BOUNDS);
        return (price, PriceStatus.OK);
    }
}
