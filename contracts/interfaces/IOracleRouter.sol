// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AggregatorV3Interface} from "./AggregatorV3Interface.sol";

/// @title IOracleRouter
/// @notice One validated price per asset, scaled to 1e18 (USD per whole unit of the asset), read
/// from any Chainlink-compatible feed. Consumers trust exactly one number, or, when a feed is
/// broken, one interval that moves against whoever is valued with it (a `Quote`).
///
/// Reading a feed (SPEC I14, I20). Every read calls `decimals()` and `latestRoundData()` with
/// a low-level `staticcall` of at most `FEED_CALL_GAS` gas and a fixed-size reply buffer, so no
/// reply can make a read revert: a revert or an INVALID opcode is `CALL_FAILED`; no code, an empty
/// or short reply, or a round id wider than 80 bits is `BAD_REPLY`; more than 18 decimals is
/// `BAD_DECIMALS`. Decimals are re-read on every read (a proxy that moves to an aggregator with
/// other decimals is never read at the old scale; one more call per feed, ≈ 1k gas for a plain
/// aggregator). Then the answer must be > 0, not from the future, not older than the last
/// accepted round (`ROUND_BACKWARDS`: a lower round id or an older `updatedAt`), strictly inside
/// the configured bounds, and no older than the heartbeat. The first failing check is the status.
///
/// Gas starvation (I20, THREATS C06): a feed call that fails while it could not have been given its
/// full `FEED_CALL_GAS` reverts the whole transaction (`FeedCallStarved`), so a caller cannot fake
/// a broken feed by sending too little gas.
///
/// Last accepted round (I19). `readQuotes` (permissionless, and what the clearinghouse calls on
/// every state change) records per asset the newest round that passed every check but
/// staleness: its price, round id and `updatedAt` (read it with `lastRound`; no event, it would
/// cost ≈ 2k gas per feed per new round). Views compare against it but cannot write it.
/// `setFeed` resets it to the new feed's current round.
///
/// Broken feeds (I18). A feed whose status is not `OK` is quoted from the last good round (the
/// current round if it is merely stale, else the recorded one) moved apart by
/// `outageDriftBpsPerHour` for every hour of its age: `low = ⌊p·(1 − d)⌋`, `high = ⌈p·(1 + d)⌉`
/// with `d = age · drift / (3600 · 10_000)`, clamped to the configured bounds; with no good round
/// ever seen, the bounds themselves. Consumers value what an account holds at `low` and what it
/// owes, and its requirements, at `high`.
///
/// Views that never revert (I20; given `FEED_CALL_GAS` per feed read): `tryPriceE18`, `quotes`,
/// `sequencerOk`, `feedConfig`, `lastRound`. Reverting on purpose: `priceE18` and `checkSequencer`
/// (with the reason), and `readQuotes` for the assets in its `requiredMask`.
///
/// Storage (gas). The feed configurations live together in one code blob (the feed book), which
/// `setFeed` rewrites whole, so reading n feeds costs one cold slot and one cold account, not 2n
/// cold slots; each asset's last accepted round is one slot of its own.
///
/// @dev Administration is OpenZeppelin `Ownable2Step`. Trust assumptions: the owner lists honest
/// feeds, sensible bounds, heartbeats and drifts; a feed may go stale, report zero, negative,
/// future or backward rounds, change its decimals, pin at a bound, revert or lose its code, and
/// every such answer is reported rather than passed on. No on-chain spot price (AMM reserves) is
/// ever read, so a same-transaction manipulation cannot move a price (THREATS A20). Asset ids are
/// small integers below `MAX_ASSETS`.
interface IOracleRouter {
    /// @notice How one asset is priced.
    /// @param feed The Chainlink-compatible aggregator (or proxy).
    /// @param heartbeatSeconds A round older than this is stale.
    /// @param outageDriftBpsPerHour How fast a broken feed's quote widens, per hour of age (I18).
    /// @param minPriceE18 Prices at or below this are rejected (a feed pinned at its floor, LUNA 2022).
    /// @param maxPriceE18 Prices at or above this are rejected.
    struct FeedConfig {
        AggregatorV3Interface feed;
        uint32 heartbeatSeconds;
        uint16 outageDriftBpsPerHour;
        uint128 minPriceE18;
        uint128 maxPriceE18;
    }

    /// @notice The last accepted round of an asset (I19): one storage slot. Zero until one is seen.
    struct Round {
        uint128 priceE18;
        uint80 roundId;
        uint48 updatedAt;
    }

    /// @notice An asset's price for a consumer: `lowE18 == highE18` is the price when `status` is
    /// `OK`; otherwise the interval a broken feed is valued with (I18).
    struct Quote {
        PriceStatus status;
        uint256 lowE18;
        uint256 highE18;
    }

    /// @notice Why a price could not be used (`OK` when it can). New statuses are appended.
    enum PriceStatus {
        OK,
        NO_FEED,
        CALL_FAILED,
        NON_POSITIVE,
        STALE,
        FUTURE,
        OUT_OF_BOUNDS,
        BAD_REPLY,
        BAD_DECIMALS,
        ROUND_BACKWARDS
    }

    // ---------------------------------------------------------------- errors
    error UnknownAsset(uint256 asset);
    error AssetIdTooLarge(uint256 asset, uint256 maxAssets);
    error InvalidFeedConfig(
        address feed, uint256 heartbeatSeconds, uint256 outageDriftBpsPerHour, uint256 minPriceE18, uint256 maxPriceE18
    );
    error UnsupportedFeedDecimals(address feed, uint256 decimals);
    error FeedCallFailed(uint256 asset, address feed);
    error FeedReplyMalformed(uint256 asset, address feed);
    error FeedCallStarved(address feed, uint256 gasAvailable);
    error NonPositivePrice(uint256 asset, int256 answer);
    error StalePrice(uint256 asset, uint256 updatedAt, uint256 heartbeatSeconds);
    error FuturePrice(uint256 asset, uint256 updatedAt, uint256 blockTimestamp);
    error RoundWentBackwards(
        uint256 asset, uint256 roundId, uint256 updatedAt, uint256 lastRoundId, uint256 lastUpdatedAt
    );
    error PriceOutOfBounds(uint256 asset, uint256 priceE18, uint256 minPriceE18, uint256 maxPriceE18);
    error SequencerDown(uint256 statusChangedAt);
    error SequencerGracePeriod(uint256 restartedAt, uint256 gracePeriodSeconds);

    // ---------------------------------------------------------------- events
    event FeedSet(
        uint256 indexed asset,
        address indexed feed,
        uint256 heartbeatSeconds,
        uint8 feedDecimals,
        uint256 outageDriftBpsPerHour,
        uint256 minPriceE18,
        uint256 maxPriceE18
    );
    event SequencerFeedSet(address indexed feed, uint256 gracePeriodSeconds);

    // ---------------------------------------------------------------- admin
    /// @notice Lists or replaces the feed of `asset` and resets its last accepted round to the
    /// feed's current one (if good). Owner only. The feed must answer `decimals()` ≤ 18 now.
    function setFeed(
        uint256 asset,
        AggregatorV3Interface feed,
        uint32 heartbeatSeconds,
        uint16 outageDriftBpsPerHour,
        uint128 minPriceE18,
        uint128 maxPriceE18
    ) external;

    /// @notice Sets the optional L2 sequencer-uptime feed (answer 0 = up, 1 = down) and the grace
    /// period after a restart during which liquidations and risk-increasing actions are refused.
    /// `address(0)` disables the check (L1). Owner only.
    function setSequencerFeed(AggregatorV3Interface feed, uint32 gracePeriodSeconds) external;

    // ---------------------------------------------------------------- reads that record
    /// @notice Quotes every asset whose bit is set in `assetMask`, in ascending asset id, and
    /// records each newer good round as the last accepted one (I19). Permissionless: recording only
    /// ever stores what the feed itself reports. Reverts with the asset's reason if an asset of
    /// `requiredMask` is not `OK`, and with `SequencerDown`/`SequencerGracePeriod` if
    /// `requiredMask` is not zero and the sequencer is not up; never reverts otherwise.
    /// @dev The state-changing read every margin check pays for, so its reply is compact: one word
    /// per quote instead of a `Quote` struct (three words, an enum to validate).
    /// @return unusableMask The assets of `assetMask` whose status is not `OK` (see `quotes`).
    /// @return lowHighE18 Per asset, `highE18 << 128 | lowE18` of its `Quote`; both fit 128 bits
    /// (a usable price lies below `maxPriceE18`, a broken feed's quote within its bounds, no feed is 0).
    function readQuotes(uint256 assetMask, uint256 requiredMask)
        external
        returns (uint256 unusableMask, uint256[] memory lowHighE18);

    // ---------------------------------------------------------------- views
    /// @notice Maximum number of assets; asset ids lie in [0, MAX_ASSETS).
    function MAX_ASSETS() external view returns (uint256);

    /// @notice Gas given to each feed call; a feed that needs more is broken.
    function FEED_CALL_GAS() external view returns (uint256);

    function feedConfig(uint256 asset) external view returns (FeedConfig memory);

    /// @notice The last accepted round of `asset` (I19).
    function lastRound(uint256 asset) external view returns (Round memory);

    /// @notice The validated price of `asset`, 1e18-scaled. Reverts with the reason it is unusable.
    function priceE18(uint256 asset) external view returns (uint256);

    /// @notice Never reverts: the price and whether (and why not) it is usable. The price is also
    /// reported for `OUT_OF_BOUNDS` (scaled, saturating); it is 0 for every other fault.
    function tryPriceE18(uint256 asset) external view returns (uint256 priceE18_, PriceStatus status);

    /// @notice Never reverts: every asset's `Quote` in ascending asset id, as `readQuotes(assetMask,
    /// 0)` would value it, without recording anything; and whether the sequencer is up.
    function quotes(uint256 assetMask) external view returns (bool sequencerUp, Quote[] memory quotes);

    /// @notice `quotes` in `readQuotes`'s compact form (what the clearinghouse's views decode).
    function peekQuotes(uint256 assetMask)
        external
        view
        returns (bool sequencerUp, uint256 unusableMask, uint256[] memory lowHighE18);

    /// @notice Reverts with `SequencerDown` or `SequencerGracePeriod` unless the L2 sequencer is up
    /// and past its grace period (a sequencer feed that does not answer counts as down). A no-op
    /// where no sequencer feed is set.
    function checkSequencer() external view;

    /// @notice Never reverts: true where `checkSequencer` would pass.
    function sequencerOk() external view returns (bool);

    /// @notice The L2 sequencer-uptime feed; `address(0)` when none is set (no check).
    function sequencerFeed() external view returns (AggregatorV3Interface);

    /// @notice How long after a sequencer restart it still counts as down for risk (`SequencerGracePeriod`).
    function sequencerGracePeriodSeconds() external view returns (uint32);
}
