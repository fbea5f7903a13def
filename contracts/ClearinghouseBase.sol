// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IAttestationVerifier} from "./interfaces/IAttestationVerifier.sol";
import {IClearinghouseBase, IFunding} from "./interfaces/IClearinghouse.sol";
import {IMarginProofs} from "./interfaces/IMarginProofs.sol";
import {IOracleRouter} from "./interfaces/IOracleRouter.sol";
import {MarginMath} from "./libraries/MarginMath.sol";

/// @title ClearinghouseBase
/// @notice What the clearinghouse and its modules share: the storage layout, the immutables, the
/// price book and the one health function. The clearinghouse and every module inherit it FIRST,
/// and no module declares storage of its own, so all of them read and write one layout through
/// `delegatecall` (the Euler vault-kit pattern).
abstract contract ClearinghouseBase is IClearinghouseBase {
    using SafeCast for uint256;
    using SafeCast for int256;
    using MarginMath for int256;
    using MarginMath for uint256;

    // ================================================================ STORAGE
    /// @notice Asset id of the quote (settlement) token, held as each account's `cashWad`.
    uint256 public constant QUOTE = 0;
    /// @dev Bounded by the widths of `Account.collateralMask` and `Account.marketMask`.
    uint256 public constant MAX_COLLATERALS = 16;
    uint256 public constant MAX_MARKETS = 32;
    /// @dev The oracle router's `MAX_ASSETS`: oracle asset ids index the price book.
    uint256 internal constant MAX_ASSETS = 32;

    IOracleRouter public immutable oracle;
    address public immutable insuranceFund;

    bool public paused;
    address public guardian;
    /// @notice Where attested requirements come from; address(0) means static margin only (Gen 2).
    IAttestationVerifier public attestor;
    /// @notice Where proven requirements come from (P2); address(0) switches the proof gate off.
    IMarginProofs public marginProofs;
    uint256 public deficitWad;
    uint256 public collateralCount;
    uint256 public marketCount;
    LiquidationConfig internal _liquidation;

    mapping(uint256 assetId => CollateralConfig) internal _collaterals;
    mapping(uint256 marketId => MarketConfig) internal _markets;
    mapping(address matcher => bool) public isMatcher;
    mapping(address account => Account) internal _accounts;

    /// @dev A position and the funding index it last settled at share one slot, so the health
    /// loop's read of a position and a trade's writes of both cost one slot, not two (I26).
    struct Position {
        int128 size;
        int128 fundingIndexWad;
    }

    mapping(address account => mapping(uint256 marketId => Position)) internal _positions;
    mapping(address account => mapping(uint256 assetId => uint256 amount)) internal _balances;
    /// @dev What the health loop reads of each market, `oracleAsset | imBps << 8 | mmBps << 24`,
    /// six markets to a slot: an account in n markets pays ⌈n/6⌉ cold slots for them, not n (one
    /// `MarketConfig` each). A copy of those `MarketConfig` fields, written only with them
    /// (`_setMarketRisk`, from the clearinghouse's market configuration).
    uint40[MAX_MARKETS] internal _marketRisk;
    // Funding (IFunding) per market; each position's last index lives in its `Position`.
    mapping(uint256 marketId => IFunding.FundingMarket) internal _funding;

    /// @dev Funding rates are quoted per this interval; caps and windows are bounded (IFunding).
    uint256 internal constant FUNDING_INTERVAL = 8 hours;
    uint256 internal constant MAX_FUNDING_RATE_BPS = 1000;
    uint256 internal constant MIN_PREMIUM_WINDOW = 60;
    uint256 internal constant MAX_PREMIUM_WINDOW = 1 days;

    /// @dev The prices one health computation uses, by oracle asset id (SPEC I18): `lowE18` values
    /// what an account holds (collateral, longs), `highE18` what it owes (shorts) and its
    /// requirements. Equal where the feed is usable; `unusableMask` marks the assets where not.
    struct Prices {
        uint256 unusableMask;
        uint256[MAX_ASSETS] lowE18;
        uint256[MAX_ASSETS] highE18;
    }

    // ================================================================ CONSTRUCTOR
    constructor(IOracleRouter oracle_, address insuranceFund_) {
        if (address(oracle_) == address(0) || insuranceFund_ == address(0)) revert ZeroAddress();
        oracle = oracle_;
        insuranceFund = insuranceFund_;
    }

    // ================================================================ INTERNAL: HEALTH
    /// @dev The one health function: equity and the requirement in force. Every rounding goes
    /// against the account: equity rounds down and is valued at the low price, requirements round
    /// up at the high price. The requirement is the attested one while S1 holds, which needs every
    /// price of the account's markets usable; static otherwise (S2). With a proof registry set,
    /// an attested MM above the static one counts only up to the MM proven for this position
    /// nonce and these prices (P2, SPEC I34): MM = min(attested, max(static, proven)), so a key
    /// quorum alone can lower MM within its clamp but never raise it to liquidate.
    function _healthAt(address account_, Account memory a, Prices memory p) internal view returns (Health memory h) {
        uint256 marketAssetMask;
        (h, marketAssetMask) = _staticHealthAt(account_, a, p);
        IAttestationVerifier attestor_ = attestor;
        if (address(attestor_) != address(0) && marketAssetMask != 0 && marketAssetMask & p.unusableMask == 0) {
            uint256[] memory prices = _marketPrices(marketAssetMask, p);
            uint256 staticMm = h.maintenanceMarginWad;
            (, h.initialMarginWad, h.maintenanceMarginWad) = attestor_.requirementInForce(
                account_, a.positionNonce, marketAssetMask, prices, h.initialMarginWad, staticMm
            );
            // Read only when it can matter: a cold slot costs every other health check 2.1k.
            if (h.maintenanceMarginWad > staticMm && address(marginProofs) != address(0)) {
                (,, uint256 proven) =
                    marginProofs.provenRequirement(account_, a.positionNonce, marketAssetMask, prices, 0, 0);
                if (proven < h.maintenanceMarginWad) h.maintenanceMarginWad = proven > staticMm ? proven : staticMm;
            }
        }
    }

    /// @dev `_healthAt` with the static requirement (also what the backstop's equity needs), and
    /// the oracle assets of the account's markets. Equity is never attested.
    function _staticHealthAt(address account_, Account memory a, Prices memory p)
        internal
        view
        returns (Health memory h, uint256 marketAssetMask)
    {
        int256 equity = a.cashWad;
        for (uint256 mask = a.collateralMask; mask != 0; mask &= mask - 1) {
            uint256 assetId = MarginMath.lowestBit(mask);
            CollateralConfig storage c = _collaterals[assetId];
            uint256 amountWad = _balances[account_][assetId] * _scale(c.decimals);
            equity += amountWad.mulDivDown(p.lowE18[c.oracleAsset] * c.weightBps, MarginMath.WAD * MarginMath.BPS)
                .toInt256();
        }
        uint256 im;
        uint256 mm;
        for (uint256 mask = a.marketMask; mask != 0; mask &= mask - 1) {
            uint256 marketId = MarginMath.lowestBit(mask);
            // One word, unpacked where used (`_marketRiskOf`'s layout): the funding term leaves
            // no stack room for the three fields apart.
            uint256 risk = _marketRisk[marketId];
            uint256 asset = uint8(risk);
            Position memory pos = _positions[account_][marketId]; // size and index: one read
            marketAssetMask |= 1 << asset;
            equity += _positionValue(pos, marketId, p.lowE18[asset], p.highE18[asset]);
            uint256 high = p.highE18[asset];
            uint256 absSize = int256(pos.size).abs();
            im += absSize.mulDivUp(high * uint16(risk >> 8), MarginMath.WAD * MarginMath.BPS);
            mm += absSize.mulDivUp(high * uint16(risk >> 24), MarginMath.WAD * MarginMath.BPS);
        }
        h.equityWad = equity;
        h.initialMarginWad = im;
        h.maintenanceMarginWad = mm;
    }

    /// @dev A position's term of equity: its mark (a long at the low price, a short at the high)
    /// less the funding it owes since it last settled (I26), counted before it settles.
    function _positionValue(Position memory pos, uint256 marketId, uint256 low, uint256 high)
        internal
        view
        returns (int256)
    {
        int256 size = pos.size;
        return size.mulDivFloor(size > 0 ? low : high, MarginMath.WAD)
            - _fundingOwed(size, pos.fundingIndexWad, _fundingIndexNow(marketId, low));
    }

    /// @dev The verifier's price argument: one price per set bit of `marketAssetMask`, ascending.
    function _marketPrices(uint256 marketAssetMask, Prices memory p) internal pure returns (uint256[] memory prices) {
        prices = new uint256[](MarginMath.popCount(marketAssetMask));
        uint256 k;
        for (uint256 mask = marketAssetMask; mask != 0; mask &= mask - 1) {
            prices[k++] = p.lowE18[MarginMath.lowestBit(mask)];
        }
    }

    // ================================================================ INTERNAL: PRICES
    /// @dev Oracle assets an account's health needs, as a bit mask for one router call.
    function _priceMask(Account memory a) internal view returns (uint256 assetMask) {
        for (uint256 mask = a.collateralMask; mask != 0; mask &= mask - 1) {
            assetMask |= 1 << _collaterals[MarginMath.lowestBit(mask)].oracleAsset;
        }
        for (uint256 mask = a.marketMask; mask != 0; mask &= mask - 1) {
            (uint256 asset,,) = _marketRiskOf(MarginMath.lowestBit(mask));
            assetMask |= 1 << asset;
        }
    }

    /// @dev Reads (and lets the router record, I19) the prices of `assetMask`. Reverts with the
    /// router's reason if an asset of `requiredMask` is unusable or, when `requiredMask` is set,
    /// the sequencer is down; quotes every other broken feed (I18).
    function _readPrices(uint256 assetMask, uint256 requiredMask) internal returns (Prices memory p) {
        (uint256 unusableMask, uint256[] memory lowHighE18) = oracle.readQuotes(assetMask, requiredMask);
        _fill(p, assetMask, unusableMask, lowHighE18);
    }

    /// @dev One asset's price, read and recorded; required (else quoted and reported unusable).
    function _readPrice(uint256 asset, bool required) internal returns (uint256 priceE18, bool usable) {
        uint256 bit = 1 << asset;
        (uint256 unusableMask, uint256[] memory lowHighE18) = oracle.readQuotes(bit, required ? bit : 0);
        return (uint128(lowHighE18[0]), unusableMask == 0);
    }

    /// @dev `_readPrices` for views: nothing recorded, nothing required, never reverts on a feed.
    function _peekPrices(uint256 assetMask) internal view returns (Prices memory p, bool sequencerUp) {
        uint256 unusableMask;
        uint256[] memory lowHighE18;
        (sequencerUp, unusableMask, lowHighE18) = oracle.peekQuotes(assetMask);
        _fill(p, assetMask, unusableMask, lowHighE18);
    }

    /// @dev Unpacks the router's compact quotes (`highE18 << 128 | lowE18`, ascending asset id).
    function _fill(Prices memory p, uint256 assetMask, uint256 unusableMask, uint256[] memory lowHighE18)
        internal
        pure
    {
        p.unusableMask = unusableMask;
        uint256 k;
        for (uint256 mask = assetMask; mask != 0; mask &= mask - 1) {
            uint256 asset = MarginMath.lowestBit(mask);
            uint256 quote = lowHighE18[k++];
            p.lowE18[asset] = uint128(quote);
            p.highE18[asset] = quote >> 128;
        }
    }

    // ================================================================ INTERNAL: FUNDING
    /// @dev The market's index now: the stored index plus the rate in force since the last accrual,
    /// at `priceE18` (IFunding). A view and an accrual in the same block give the same value.
    function _fundingIndexNow(uint256 marketId, uint256 priceE18) internal view returns (int256) {
        IFunding.FundingMarket storage f = _funding[marketId];
        int256 elapsed = int256(_fundingElapsed(f));
        return f.indexWad + priceE18.toInt256() * f.rateE18 * elapsed / int256(FUNDING_INTERVAL * MarginMath.WAD);
    }

    /// @dev Seconds since the last accrual; zero, not a revert, when a call's environment is
    /// older than the last accrual (a node may simulate `eth_call` at its own clock's time).
    function _fundingElapsed(IFunding.FundingMarket storage f) internal view returns (uint256) {
        uint256 last = f.lastAccrual;
        return block.timestamp > last ? block.timestamp - last : 0;
    }

    /// @dev What a position of `size` owes at `indexWad` since it last settled at `settledIndexWad`:
    /// the payer's share rounds up, the receiver's down, so settlements never pay out more than
    /// they take in (I26).
    function _fundingOwed(int256 size, int256 settledIndexWad, int256 indexWad) internal pure returns (int256) {
        return size.mulDivCeilSigned(indexWad - settledIndexWad, MarginMath.WAD);
    }

    /// @dev Accrues the market's index to now at `priceE18`, folds the held premium into its
    /// average by the time it stood, and sets the clamped rate in force from now on (I29).
    function _accrueFunding(uint256 marketId, uint256 priceE18) internal returns (int256 indexWad) {
        IFunding.FundingMarket storage f = _funding[marketId];
        indexWad = _fundingIndexNow(marketId, priceE18);
        uint256 elapsed = _fundingElapsed(f);
        if (elapsed == 0) return indexWad;
        uint256 window = f.premiumWindowS;
        int256 ema = f.premiumEmaE18;
        ema += (f.lastPremiumE18 - ema) * int256(elapsed < window ? elapsed : window) / int256(window);
        int256 rate = _clampedRate(ema, f.maxRateBps);
        f.indexWad = indexWad.toInt128();
        f.rateE18 = int64(rate);
        f.lastAccrual = uint40(block.timestamp);
        f.premiumEmaE18 = int64(ema);
        emit IFunding.FundingAccrued(marketId, indexWad, rate, ema, block.timestamp);
    }

    /// @dev The average premium clamped to ±`maxRateBps` per interval (I29).
    function _clampedRate(int256 premiumE18, uint256 maxRateBps) internal pure returns (int256) {
        int256 cap = int256(maxRateBps * (MarginMath.WAD / MarginMath.BPS));
        return premiumE18 > cap ? cap : premiumE18 < -cap ? -cap : premiumE18;
    }

    /// @dev Settles what a position of `size` owes at `indexWad` (the market accrued to now) into
    /// cash, and records the index. Call before any change of the position's size, with its size
    /// before the change: a position just opened starts at the current index (I28).
    function _settleFunding(address account_, uint256 marketId, int256 size, int256 indexWad)
        internal
        returns (int256 amountWad)
    {
        Position storage pos = _positions[account_][marketId];
        amountWad = _fundingOwed(size, pos.fundingIndexWad, indexWad);
        pos.fundingIndexWad = indexWad.toInt128();
        if (amountWad == 0) return 0;
        Account storage a = _accounts[account_];
        a.cashWad = (a.cashWad - amountWad).toInt128();
        emit IFunding.FundingSettled(account_, marketId, amountWad);
    }

    // ================================================================ INTERNAL: HELPERS
    /// @dev Writes `_marketRisk`: called wherever those `MarketConfig` fields are set.
    function _setMarketRisk(uint256 marketId, uint8 oracleAsset, uint16 imBps, uint16 mmBps) internal {
        _marketRisk[marketId] = uint40(oracleAsset) | uint40(imBps) << 8 | uint40(mmBps) << 24;
    }

    function _marketRiskOf(uint256 marketId) internal view returns (uint256 oracleAsset, uint256 imBps, uint256 mmBps) {
        uint256 risk = _marketRisk[marketId];
        return (uint8(risk), uint16(risk >> 8), uint16(risk >> 24));
    }

    function _listedMarket(uint256 marketId) internal view returns (MarketConfig storage m) {
        m = _markets[marketId];
        if (!m.listed) revert UnknownMarket(marketId);
    }

    function _creditCash(address account_, uint256 amountWad) internal {
        Account storage a = _accounts[account_];
        a.cashWad = (a.cashWad + amountWad.toInt256()).toInt128();
    }

    function _openInterestAfter(uint128 openInterest, int256 sizeBefore, int256 sizeAfter)
        internal
        pure
        returns (uint128)
    {
        uint256 longBefore = sizeBefore > 0 ? uint256(sizeBefore) : 0;
        uint256 longAfter = sizeAfter > 0 ? uint256(sizeAfter) : 0;
        return (uint256(openInterest) + longAfter - longBefore).toUint128();
    }

    /// @dev Multiplier from token units to 18 decimals.
    function _scale(uint8 decimals) internal pure returns (uint256) {
        return 10 ** (18 - uint256(decimals));
    }
}
