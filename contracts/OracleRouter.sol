// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {AggregatorV3Interface} from "./interfaces/AggregatorV3Interface.sol";
import {IOracleRouter} from "./interfaces/IOracleRouter.sol";
import {CodeData} from "./libraries/CodeData.sol";
import {MarginMath} from "./libraries/MarginMath.sol";

/// @title OracleRouter
/// @notice Validates Chainlink-compatible feeds once so consumers can trust a single 1e18 number,
/// or a documented interval when a feed is broken (see IOracleRouter).
contract OracleRouter is IOracleRouter, Ownable2Step {
    using MarginMath for uint256;

    // ================================================================ STORAGE
    /// @inheritdoc IOracleRouter
    uint256 public constant MAX_ASSETS = 32;
    /// @inheritdoc IOracleRouter
    uint256 public constant FEED_CALL_GAS = 100_000;

    /// @dev Below this much gas left before a feed call, the call may get less than
    /// `FEED_CALL_GAS` (EIP-150 keeps 1/64 back, and a cold account costs 2,600 first), so its
    /// failure cannot be told from starvation (THREATS C06).
    uint256 internal constant FEED_CALL_GAS_NEEDED = FEED_CALL_GAS * 64 / 63 + 5000;
    /// @dev Feeds report at most 18 decimals here, so normalising is always a multiplication.
    uint256 internal constant MAX_FEED_DECIMALS = 18;
    /// @dev `latestRoundData` returns five words.
    uint256 internal constant ROUND_REPLY_BYTES = 160;
    uint256 internal constant HOUR_BPS = 3600 * MarginMath.BPS;
    /// @dev A broken feed's quote may widen by at most 100% an hour.
    uint256 internal constant MAX_OUTAGE_DRIFT_BPS_PER_HOUR = MarginMath.BPS;
    /// @dev One asset's entry in the feed book: a `FeedConfig` as it lies in memory (five words).
    uint256 internal constant FEED_ENTRY_BYTES = 160;
    /// @dev The book's head: a `SequencerConfig` as it lies in memory (two words).
    uint256 internal constant SEQUENCER_ENTRY_BYTES = 64;

    /// @dev The feed book: the sequencer's `SequencerConfig`, then every asset's `FeedConfig`, asset
    /// `i` at byte `SEQUENCER_ENTRY_BYTES + i * FEED_ENTRY_BYTES`, kept as code (CodeData) and
    /// rewritten whole by `setFeed` and `setSequencerFeed`. A read of n feeds with the sequencer
    /// check then costs one cold slot and one cold account instead of 2n + 1 cold slots; an asset
    /// past its end reads as no feed, and an empty book as no sequencer feed.
    address internal _feedBook;
    mapping(uint256 asset => Round) internal _lastRounds;

    /// @dev The optional L2 sequencer-uptime feed and its grace period after a restart.
    struct SequencerConfig {
        AggregatorV3Interface feed;
        uint32 gracePeriodSeconds;
    }

    /// @dev One feed read: what the feed said and what the checks made of it.
    struct Reading {
        PriceStatus status;
        uint256 priceE18;
        int256 answer;
        uint256 roundId;
        uint256 updatedAt;
        uint256 decimals;
    }

    // ================================================================ CONSTRUCTOR
    constructor(address owner_) Ownable(owner_) {}

    // ================================================================ EXTERNAL
    /// @inheritdoc IOracleRouter
    function setFeed(
        uint256 asset,
        AggregatorV3Interface feed,
        uint32 heartbeatSeconds,
        uint16 outageDriftBpsPerHour,
        uint128 minPriceE18,
        uint128 maxPriceE18
    ) external onlyOwner {
        if (asset >= MAX_ASSETS) revert AssetIdTooLarge(asset, MAX_ASSETS);
        if (
            address(feed) == address(0) || heartbeatSeconds == 0 || outageDriftBpsPerHour == 0
                || outageDriftBpsPerHour > MAX_OUTAGE_DRIFT_BPS_PER_HOUR || minPriceE18 == 0
                || minPriceE18 >= maxPriceE18
        ) {
            revert InvalidFeedConfig(address(feed), heartbeatSeconds, outageDriftBpsPerHour, minPriceE18, maxPriceE18);
        }
        (PriceStatus status, uint256 decimals) = _decimals(feed);
        if (status == PriceStatus.BAD_DECIMALS) revert UnsupportedFeedDecimals(address(feed), decimals);
        if (status != PriceStatus.OK) revert FeedCallFailed(asset, address(feed));
        FeedConfig memory cfg = FeedConfig(feed, heartbeatSeconds, outageDriftBpsPerHour, minPriceE18, maxPriceE18);
        uint256 entry;
        assembly ("memory-safe") {
            entry := cfg
        }
        _writeEntry(SEQUENCER_ENTRY_BYTES + asset * FEED_ENTRY_BYTES, entry, FEED_ENTRY_BYTES);
        emit FeedSet(
            asset, address(feed), heartbeatSeconds, uint8(decimals), outageDriftBpsPerHour, minPriceE18, maxPriceE18
        );
        // A new feed's round ids mean nothing against the old one's: start from its own round.
        Round memory none;
        _lastRounds[asset] = none;
        _record(asset, none, _read(asset, cfg, none));
    }

    /// @inheritdoc IOracleRouter
    function setSequencerFeed(AggregatorV3Interface feed, uint32 gracePeriodSeconds) external onlyOwner {
        SequencerConfig memory cfg = SequencerConfig(feed, gracePeriodSeconds);
        uint256 entry;
        assembly ("memory-safe") {
            entry := cfg
        }
        _writeEntry(0, entry, SEQUENCER_ENTRY_BYTES);
        emit SequencerFeedSet(address(feed), gracePeriodSeconds);
    }

    /// @inheritdoc IOracleRouter
    function readQuotes(uint256 assetMask, uint256 requiredMask)
        external
        returns (uint256 unusableMask, uint256[] memory lowHighE18)
    {
        address book = _feedBook;
        if (requiredMask != 0) _checkSequencer(book);
        lowHighE18 = new uint256[](MarginMath.popCount(assetMask));
        uint256 k;
        for (uint256 mask = assetMask; mask != 0; mask &= mask - 1) {
            uint256 asset = MarginMath.lowestBit(mask);
            FeedConfig memory cfg = _feedIn(book, asset);
            Round memory last = _lastRounds[asset];
            Reading memory r = _read(asset, cfg, last);
            if (r.status != PriceStatus.OK) {
                if (requiredMask & (1 << asset) != 0) _revertFor(asset, cfg, last, r);
                unusableMask |= 1 << asset;
            }
            _record(asset, last, r);
            // A usable price is its own quote (`_quote`): only a broken feed's needs computing.
            lowHighE18[k++] = r.status == PriceStatus.OK ? r.priceE18 << 128 | r.priceE18 : _pack(_quote(cfg, last, r));
        }
    }

    // ================================================================ VIEWS
    /// @inheritdoc IOracleRouter
    function feedConfig(uint256 asset) external view returns (FeedConfig memory) {
        return _feedIn(_feedBook, asset);
    }

    /// @inheritdoc IOracleRouter
    function lastRound(uint256 asset) external view returns (Round memory) {
        return _lastRounds[asset];
    }

    /// @inheritdoc IOracleRouter
    function priceE18(uint256 asset) external view returns (uint256) {
        FeedConfig memory cfg = _feedIn(_feedBook, asset);
        Round memory last = _lastRounds[asset];
        Reading memory r = _read(asset, cfg, last);
        if (r.status != PriceStatus.OK) _revertFor(asset, cfg, last, r);
        return r.priceE18;
    }

    /// @inheritdoc IOracleRouter
    function tryPriceE18(uint256 asset) external view returns (uint256 priceE18_, PriceStatus status) {
        Reading memory r = _read(asset, _feedIn(_feedBook, asset), _lastRounds[asset]);
        bool priced = r.status == PriceStatus.OK || r.status == PriceStatus.OUT_OF_BOUNDS;
        return (priced ? r.priceE18 : 0, r.status);
    }

    /// @inheritdoc IOracleRouter
    function quotes(uint256 assetMask) external view returns (bool sequencerUp, Quote[] memory quotes_) {
        return (_sequencerOk(_feedBook), _quotes(assetMask));
    }

    /// @inheritdoc IOracleRouter
    function peekQuotes(uint256 assetMask)
        external
        view
        returns (bool sequencerUp, uint256 unusableMask, uint256[] memory lowHighE18)
    {
        Quote[] memory q = _quotes(assetMask);
        lowHighE18 = new uint256[](q.length);
        uint256 k;
        for (uint256 mask = assetMask; mask != 0; mask &= mask - 1) {
            if (q[k].status != PriceStatus.OK) unusableMask |= 1 << MarginMath.lowestBit(mask);
            lowHighE18[k] = _pack(q[k]);
            ++k;
        }
        sequencerUp = _sequencerOk(_feedBook);
    }

    /// @inheritdoc IOracleRouter
    function checkSequencer() external view {
        _checkSequencer(_feedBook);
    }

    /// @inheritdoc IOracleRouter
    function sequencerOk() external view returns (bool) {
        return _sequencerOk(_feedBook);
    }

    /// @inheritdoc IOracleRouter
    function sequencerFeed() external view returns (AggregatorV3Interface) {
        return _sequencerIn(_feedBook).feed;
    }

    /// @inheritdoc IOracleRouter
    function sequencerGracePeriodSeconds() external view returns (uint32) {
        return _sequencerIn(_feedBook).gracePeriodSeconds;
    }

    // ================================================================ INTERNAL: FEED BOOK
    /// @dev `asset`'s configuration from the feed book `book`; all zero (no feed) when unlisted.
    function _feedIn(address book, uint256 asset) internal view returns (FeedConfig memory cfg) {
        if (book == address(0) || asset >= MAX_ASSETS) return cfg;
        uint256 dest;
        assembly ("memory-safe") {
            dest := cfg
        }
        // Bytes past the end of the code read as zero, so an asset beyond the book has no feed.
        CodeData.copyTo(book, SEQUENCER_ENTRY_BYTES + asset * FEED_ENTRY_BYTES, FEED_ENTRY_BYTES, dest);
    }

    /// @dev The sequencer's configuration from the feed book `book`; all zero (none) when empty.
    function _sequencerIn(address book) internal view returns (SequencerConfig memory cfg) {
        if (book == address(0)) return cfg;
        uint256 dest;
        assembly ("memory-safe") {
            dest := cfg
        }
        CodeData.copyTo(book, 0, SEQUENCER_ENTRY_BYTES, dest);
    }

    /// @dev Rewrites the book with the `length` bytes at memory `entry` at byte `offset`, growing it
    /// to reach them (the gap reads as zero: no feed).
    function _writeEntry(uint256 offset, uint256 entry, uint256 length) internal {
        address book = _feedBook;
        uint256 oldLength = book == address(0) ? 0 : book.code.length - CodeData.DATA_OFFSET;
        uint256 end = offset + length;
        bytes memory entries = new bytes(end > oldLength ? end : oldLength);
        uint256 dest;
        assembly ("memory-safe") {
            dest := add(entries, 32)
        }
        if (oldLength != 0) CodeData.copyTo(book, 0, oldLength, dest);
        assembly ("memory-safe") {
            mcopy(add(dest, offset), entry, length)
        }
        _feedBook = CodeData.write(entries);
    }

    // ================================================================ INTERNAL: READING
    /// @dev Reads one feed and runs every check, in the documented order; never reverts (except on
    /// starvation, C06). `last` is the asset's last accepted round (I19).
    function _read(uint256 asset, FeedConfig memory cfg, Round memory last) internal view returns (Reading memory r) {
        if (asset >= MAX_ASSETS || address(cfg.feed) == address(0)) {
            r.status = PriceStatus.NO_FEED;
            return r;
        }
        (r.status, r.decimals) = _decimals(cfg.feed);
        if (r.status != PriceStatus.OK) return r;
        (r.status, r.roundId, r.answer,, r.updatedAt) = _latestRound(cfg.feed);
        if (r.status != PriceStatus.OK) return r;
        if (r.answer <= 0) return _fail(r, PriceStatus.NON_POSITIVE);
        if (r.updatedAt > block.timestamp) return _fail(r, PriceStatus.FUTURE);
        if (r.roundId < last.roundId || r.updatedAt < last.updatedAt) return _fail(r, PriceStatus.ROUND_BACKWARDS);
        uint256 scale;
        // decimals ≤ 18 (checked above), so 10 ** (18 - decimals) cannot overflow: the plain EXP.
        unchecked {
            scale = 10 ** (MAX_FEED_DECIMALS - r.decimals);
        }
        // An absurd answer must not overflow the scaling: it saturates and is out of bounds.
        if (uint256(r.answer) > type(uint256).max / scale) {
            r.priceE18 = type(uint256).max;
            return _fail(r, PriceStatus.OUT_OF_BOUNDS);
        }
        unchecked {
            r.priceE18 = uint256(r.answer) * scale; // no overflow: just checked
        }
        // A bound is where a feed pins when the market leaves its range (Chainlink's min/maxAnswer,
        // LUNA 2022), so a price AT a bound is as untrustworthy as one beyond it.
        if (r.priceE18 <= cfg.minPriceE18 || r.priceE18 >= cfg.maxPriceE18) {
            return _fail(r, PriceStatus.OUT_OF_BOUNDS);
        }
        // Last: a stale round is still a good round, the best base for a broken feed's quote.
        if (block.timestamp - r.updatedAt > cfg.heartbeatSeconds) r.status = PriceStatus.STALE;
    }

    /// @dev Every asset's quote of `assetMask`, ascending, without recording anything.
    function _quotes(uint256 assetMask) internal view returns (Quote[] memory quotes_) {
        quotes_ = new Quote[](MarginMath.popCount(assetMask));
        uint256 k;
        address book = _feedBook;
        for (uint256 mask = assetMask; mask != 0; mask &= mask - 1) {
            uint256 asset = MarginMath.lowestBit(mask);
            FeedConfig memory cfg = _feedIn(book, asset);
            Round memory last = _lastRounds[asset];
            quotes_[k++] = _quote(cfg, last, _read(asset, cfg, last));
        }
    }

    /// @dev A quote in one word, `highE18 << 128 | lowE18`: both are below 2^128 (IOracleRouter).
    function _pack(Quote memory q) internal pure returns (uint256) {
        return q.highE18 << 128 | q.lowE18;
    }

    function _fail(Reading memory r, PriceStatus status) internal pure returns (Reading memory) {
        r.status = status;
        return r;
    }

    /// @dev The price to value `asset` at (I18): the price itself when usable; else the last
    /// good round moved apart by the configured drift per hour of its age, within the bounds.
    function _quote(FeedConfig memory cfg, Round memory last, Reading memory r) internal view returns (Quote memory q) {
        q.status = r.status;
        if (r.status == PriceStatus.OK) {
            q.lowE18 = q.highE18 = r.priceE18;
            return q;
        }
        if (r.status == PriceStatus.NO_FEED) return q;
        (uint256 price, uint256 updatedAt) = r.status == PriceStatus.STALE
            ? (r.priceE18, r.updatedAt)
            : (uint256(last.priceE18), uint256(last.updatedAt));
        if (price == 0) return Quote(r.status, cfg.minPriceE18, cfg.maxPriceE18);
        // A transaction never runs before a round already recorded, but an `eth_call` may be given
        // an older block time: the never-reverting views then count the round as just published.
        uint256 drift = (block.timestamp > updatedAt ? block.timestamp - updatedAt : 0) * cfg.outageDriftBpsPerHour;
        q.lowE18 = drift >= HOUR_BPS ? 0 : price.mulDivDown(HOUR_BPS - drift, HOUR_BPS);
        q.highE18 = price.mulDivUp(HOUR_BPS + drift, HOUR_BPS);
        if (q.lowE18 < cfg.minPriceE18) q.lowE18 = cfg.minPriceE18;
        if (q.highE18 > cfg.maxPriceE18) q.highE18 = cfg.maxPriceE18;
    }

    /// @dev Records a good round (fresh or stale) newer than the last accepted one (I19).
    function _record(uint256 asset, Round memory last, Reading memory r) internal {
        if (r.status != PriceStatus.OK && r.status != PriceStatus.STALE) return;
        if (r.roundId == last.roundId && r.updatedAt == last.updatedAt) return;
        // In bounds, so below maxPriceE18 < 2^128; checked round id and time fit their widths.
        _lastRounds[asset] = Round(uint128(r.priceE18), uint80(r.roundId), uint48(r.updatedAt));
    }

    function _revertFor(uint256 asset, FeedConfig memory cfg, Round memory last, Reading memory r) internal view {
        PriceStatus s = r.status;
        address feed = address(cfg.feed);
        if (s == PriceStatus.NO_FEED) revert UnknownAsset(asset);
        if (s == PriceStatus.CALL_FAILED) revert FeedCallFailed(asset, feed);
        if (s == PriceStatus.BAD_REPLY) revert FeedReplyMalformed(asset, feed);
        if (s == PriceStatus.BAD_DECIMALS) revert UnsupportedFeedDecimals(feed, r.decimals);
        if (s == PriceStatus.NON_POSITIVE) revert NonPositivePrice(asset, r.answer);
        if (s == PriceStatus.FUTURE) revert FuturePrice(asset, r.updatedAt, block.timestamp);
        if (s == PriceStatus.ROUND_BACKWARDS) {
            revert RoundWentBackwards(asset, r.roundId, r.updatedAt, last.roundId, last.updatedAt);
        }
        if (s == PriceStatus.STALE) revert StalePrice(asset, r.updatedAt, cfg.heartbeatSeconds);
        revert PriceOutOfBounds(asset, r.priceE18, cfg.minPriceE18, cfg.maxPriceE18);
    }

    // ================================================================ INTERNAL: FEED CALLS
    function _decimals(AggregatorV3Interface feed) internal view returns (PriceStatus status, uint256 decimals) {
        (bool ok, uint256 size, uint256[5] memory reply) = _call(feed, AggregatorV3Interface.decimals.selector);
        if (!ok) return (PriceStatus.CALL_FAILED, 0);
        if (size < 32) return (PriceStatus.BAD_REPLY, 0);
        decimals = reply[0];
        status = decimals > MAX_FEED_DECIMALS ? PriceStatus.BAD_DECIMALS : PriceStatus.OK;
    }

    function _latestRound(AggregatorV3Interface feed)
        internal
        view
        returns (PriceStatus status, uint256 roundId, int256 answer, uint256 startedAt, uint256 updatedAt)
    {
        (bool ok, uint256 size, uint256[5] memory reply) = _call(feed, AggregatorV3Interface.latestRoundData.selector);
        if (!ok) return (PriceStatus.CALL_FAILED, 0, 0, 0, 0);
        if (size < ROUND_REPLY_BYTES || reply[0] > type(uint80).max) return (PriceStatus.BAD_REPLY, 0, 0, 0, 0);
        return (PriceStatus.OK, reply[0], int256(reply[1]), reply[2], reply[3]);
    }

    /// @dev A capped `staticcall` whose reply is copied into a fixed five-word buffer: no reply,
    /// however long or short, can make the caller revert or pay for copying it (F01). A failure
    /// when the call may have had less than its cap reverts the whole transaction (C06).
    function _call(AggregatorV3Interface feed, bytes4 selector)
        internal
        view
        returns (bool ok, uint256 size, uint256[5] memory reply)
    {
        uint256 gasAvailable = gasleft();
        assembly ("memory-safe") {
            mstore(0x00, selector)
            ok := staticcall(FEED_CALL_GAS, feed, 0x00, 4, reply, ROUND_REPLY_BYTES)
            size := returndatasize()
        }
        if (!ok && gasAvailable < FEED_CALL_GAS_NEEDED) revert FeedCallStarved(address(feed), gasAvailable);
    }

    // ================================================================ INTERNAL: SEQUENCER
    enum Sequencer {
        UP,
        DOWN,
        GRACE
    }

    /// @dev A sequencer feed that does not answer counts as down, and so does startedAt == 0, an
    /// uninitialised round (Chainlink's early Arbitrum feed): neither proves uptime.
    function _sequencer(SequencerConfig memory cfg) internal view returns (Sequencer state, uint256 startedAt) {
        if (address(cfg.feed) == address(0)) return (Sequencer.UP, 0);
        PriceStatus status;
        int256 answer;
        (status,, answer, startedAt,) = _latestRound(cfg.feed);
        if (status != PriceStatus.OK || answer != 0 || startedAt == 0) return (Sequencer.DOWN, startedAt);
        if (block.timestamp < startedAt + cfg.gracePeriodSeconds) return (Sequencer.GRACE, startedAt);
        return (Sequencer.UP, startedAt);
    }

    function _sequencerOk(address book) internal view returns (bool) {
        (Sequencer state,) = _sequencer(_sequencerIn(book));
        return state == Sequencer.UP;
    }

    function _checkSequencer(address book) internal view {
        SequencerConfig memory cfg = _sequencerIn(book);
        (Sequencer state, uint256 startedAt) = _sequencer(cfg);
        if (state == Sequencer.DOWN) revert SequencerDown(startedAt);
        if (state == Sequencer.GRACE) revert SequencerGracePeriod(startedAt, cfg.gracePeriodSeconds);
    }
}
