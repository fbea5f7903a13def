// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IBackstopOffer} from "../interfaces/IBackstopOffer.sol";
import {IClearinghouse} from "../interfaces/IClearinghouse.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {MarginMath} from "../libraries/MarginMath.sol";

/// @title BackstopOffer
/// @notice The insurance fund's standing offer (see IBackstopOffer): a matcher whose only trade is
/// a taker taking over the fund's position at the oracle price less a bounded discount. It holds
/// nothing; the clearinghouse checks every trade rule.
contract BackstopOffer is IBackstopOffer, Ownable2Step {
    using MarginMath for uint256;
    using MarginMath for int256;

    /// @inheritdoc IBackstopOffer
    uint16 public constant MAX_DISCOUNT_BPS = 500;

    /// @inheritdoc IBackstopOffer
    IClearinghouse public immutable clearinghouse;
    IOracleRouter internal immutable _oracle;
    address internal immutable _fund;

    /// @inheritdoc IBackstopOffer
    uint16 public discountBps;

    constructor(address owner_, IClearinghouse clearinghouse_, uint16 discountBps_) Ownable(owner_) {
        clearinghouse = clearinghouse_;
        _oracle = clearinghouse_.oracle();
        _fund = clearinghouse_.insuranceFund();
        _setDiscount(discountBps_);
    }

    /// @inheritdoc IBackstopOffer
    function take(uint256 marketId, uint256 size, uint256 limitPriceE18)
        external
        returns (int256 takerSizeDelta, uint256 priceE18)
    {
        int256 offered = clearinghouse.position(_fund, marketId);
        if (offered == 0) revert NothingOffered(marketId);
        if (size > offered.abs()) revert OfferExceeded(marketId, size, offered.abs());
        uint256 oraclePrice = _oracle.priceE18(clearinghouse.market(marketId).oracleAsset);
        bool buys = offered > 0;
        priceE18 = _discounted(oraclePrice, buys);
        if (buys ? priceE18 > limitPriceE18 : priceE18 < limitPriceE18) {
            revert PriceBeyondLimit(priceE18, limitPriceE18);
        }
        takerSizeDelta = buys ? int256(size) : -int256(size);
        clearinghouse.settleTrade(marketId, msg.sender, _fund, takerSizeDelta, priceE18);
        emit BackstopTaken(marketId, msg.sender, takerSizeDelta, priceE18, oraclePrice, discountBps);
    }

    /// @inheritdoc IBackstopOffer
    function setDiscount(uint16 discountBps_) external onlyOwner {
        _setDiscount(discountBps_);
    }

    /// @inheritdoc IBackstopOffer
    function offer(uint256 marketId) external view returns (int256 takerSizeMax, uint256 priceE18) {
        takerSizeMax = clearinghouse.position(_fund, marketId);
        (uint256 oraclePrice, IOracleRouter.PriceStatus status) =
            _oracle.tryPriceE18(clearinghouse.market(marketId).oracleAsset);
        if (status == IOracleRouter.PriceStatus.OK) priceE18 = _discounted(oraclePrice, takerSizeMax > 0);
    }

    /// @dev The taker's price, rounded in the fund's favour: a buy rounds up, a sell down.
    function _discounted(uint256 oraclePrice, bool buys) internal view returns (uint256) {
        return buys
            ? oraclePrice.mulDivUp(MarginMath.BPS - discountBps, MarginMath.BPS)
            : oraclePrice.mulDivDown(MarginMath.BPS + discountBps, MarginMath.BPS);
    }

    function _setDiscount(uint16 discountBps_) internal {
        if (discountBps_ > MAX_DISCOUNT_BPS) revert DiscountTooLarge(discountBps_, MAX_DISCOUNT_BPS);
        discountBps = discountBps_;
        emit DiscountSet(discountBps_);
    }
}
