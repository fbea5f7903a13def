// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ClearinghouseBase} from "../ClearinghouseBase.sol";
import {IFunding} from "../interfaces/IClearinghouse.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {MarginMath} from "../libraries/MarginMath.sol";

/// @title FundingModule
/// @notice Funding settlement, configuration and the trade hook (see IFunding). Runs only through
/// the clearinghouse's `delegatecall`, on the clearinghouse's storage; it keeps no state of its own.
/// The index math (accrual, settlement, what health counts) lives in `ClearinghouseBase`, shared
/// with the liquidation module.
contract FundingModule is IFunding, ClearinghouseBase, ReentrancyGuardTransient {
    using SafeCast for uint256;
    using SafeCast for int256;

    /// @dev Defaults a market is listed with (IFunding: Paradex's 2% per 8 h, dYdX's hourly mean).
    uint16 internal constant DEFAULT_MAX_RATE_BPS = 200;
    uint32 internal constant DEFAULT_PREMIUM_WINDOW = 1 hours;

    // ================================================================ CONSTRUCTOR
    constructor(IOracleRouter oracle_, address insuranceFund_) ClearinghouseBase(oracle_, insuranceFund_) {}

    // ================================================================ EXTERNAL
    /// @inheritdoc IFunding
    function settleFunding(address account_, uint256 marketId) external nonReentrant returns (int256 amountWad) {
        MarketConfig storage m = _listedMarket(marketId);
        Position memory pos = _positions[account_][marketId];
        int256 size = pos.size;
        if (size == 0) revert NothingToSettle(account_, marketId);
        (uint256 priceE18,) = _readPrice(m.oracleAsset, false);
        int256 indexWad = _accrueFunding(marketId, priceE18);
        // Less than a wei to receive: the claim keeps accruing at the old index (and every
        // index change a mirror must know about comes with an event).
        if (_fundingOwed(size, pos.fundingIndexWad, indexWad) == 0) return 0;
        return _settleFunding(account_, marketId, size, indexWad);
    }

    /// @inheritdoc IFunding
    /// @dev The clearinghouse checks the owner before it delegates here.
    function configureFunding(uint256 marketId, uint16 maxRateBps, uint32 premiumWindowS) external {
        MarketConfig storage m = _listedMarket(marketId);
        if (
            maxRateBps > MAX_FUNDING_RATE_BPS || premiumWindowS < MIN_PREMIUM_WINDOW
                || premiumWindowS > MAX_PREMIUM_WINDOW
        ) {
            revert InvalidFundingConfig(maxRateBps, premiumWindowS);
        }
        _configure(marketId, m, maxRateBps, premiumWindowS);
    }

    // ================================================================ CLEARINGHOUSE HOOKS
    /// @notice A newly listed market's funding: the defaults, accrued from now.
    /// @dev Reached only by the clearinghouse's own `delegatecall` (no selector of the
    /// clearinghouse leads here); called directly it sees the module's empty storage.
    function onMarketListed(uint256 marketId) external {
        _configure(marketId, _markets[marketId], DEFAULT_MAX_RATE_BPS, DEFAULT_PREMIUM_WINDOW);
    }

    /// @notice Funding of a trade, after both sides were booked: accrues the market at the oracle
    /// price, settles each side's funding on its size before the trade (I28), and samples the
    /// trade's premium when the oracle price is usable (I29).
    /// @dev Reached only by the clearinghouse's own `delegatecall`, like `onMarketListed`.
    function onTrade(
        uint256 marketId,
        address taker,
        int256 takerSizeBefore,
        address maker,
        int256 makerSizeBefore,
        uint256 priceE18,
        uint256 oraclePriceE18,
        bool priced
    ) external {
        int256 indexWad = _accrueFunding(marketId, oraclePriceE18);
        _settleFunding(taker, marketId, takerSizeBefore, indexWad);
        _settleFunding(maker, marketId, makerSizeBefore, indexWad);
        if (!priced) return;
        // Inside the band, so |premium| < 1 and it fits 64 bits.
        int256 premiumE18 =
            (priceE18.toInt256() - oraclePriceE18.toInt256()) * int256(MarginMath.WAD) / oraclePriceE18.toInt256();
        _funding[marketId].lastPremiumE18 = int64(premiumE18);
        emit PremiumSampled(marketId, premiumE18);
    }

    // ================================================================ INTERNAL
    /// @dev I27: the index accrues under the old parameters up to now (a market never configured
    /// has nothing accrued) before the new cap sets the rate in force from now on.
    function _configure(uint256 marketId, MarketConfig storage m, uint16 maxRateBps, uint32 premiumWindowS) internal {
        FundingMarket storage f = _funding[marketId];
        if (f.premiumWindowS != 0) {
            (uint256 priceE18,) = _readPrice(m.oracleAsset, false);
            _accrueFunding(marketId, priceE18);
        }
        int256 rateE18 = _clampedRate(f.premiumEmaE18, maxRateBps);
        f.maxRateBps = maxRateBps;
        f.premiumWindowS = premiumWindowS;
        f.rateE18 = int64(rateE18);
        f.lastAccrual = uint40(block.timestamp);
        emit FundingConfigured(marketId, maxRateBps, premiumWindowS);
        emit FundingAccrued(marketId, f.indexWad, rateE18, f.premiumEmaE18, block.timestamp);
    }
}
