// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearinghouse} from "./IClearinghouse.sol";

/// @title IBackstopOffer
/// @notice The insurance fund's standing offer: anyone may take over what the fund absorbed in
/// liquidations, in any amount up to the fund's position, at the oracle price less a discount (a
/// taker buys the fund's long below the oracle price, sells to the fund's short above it). The
/// trade is settled by the clearinghouse as a matcher's trade with the fund as maker, so every
/// trade rule holds for both sides: the taker's initial margin, position and open-interest caps,
/// the pause, the oracle band, and the fund's side only ever reduces (SPEC I31).
///
/// Trust assumptions: the clearinghouse's owner registers this contract as a matcher, which lets it
/// trade the insurance fund's account; it only ever moves the fund's positions toward zero. The
/// owner sets the discount within `MAX_DISCOUNT_BPS` and below every market's price band (a
/// discount beyond a market's band makes its takes revert with `PriceOutsideBand`). The oracle is
/// trusted as for every other trade; with the market's price unusable, nothing can be taken.
interface IBackstopOffer {
    // ================================================================ ERRORS
    error DiscountTooLarge(uint256 discountBps, uint256 maxDiscountBps);
    error NothingOffered(uint256 marketId);
    error OfferExceeded(uint256 marketId, uint256 size, uint256 offeredSize);
    error PriceBeyondLimit(uint256 priceE18, uint256 limitPriceE18);

    // ================================================================ EVENTS
    /// @notice `taker` took `takerSizeDelta` of the fund's position (the fund moved by its negation)
    /// at `priceE18`, the oracle's `oraclePriceE18` less `discountBps` in the taker's favour. The
    /// clearinghouse's `TradeSettled` (maker: the insurance fund) carries the sizes after.
    event BackstopTaken(
        uint256 indexed marketId,
        address indexed taker,
        int256 takerSizeDelta,
        uint256 priceE18,
        uint256 oraclePriceE18,
        uint256 discountBps
    );

    event DiscountSet(uint256 discountBps);

    // ================================================================ ACTIONS
    /// @notice Takes `size` of the fund's position in `marketId`: the caller's size moves by
    /// `size` in the fund's direction, the fund's by the opposite, at `offer(marketId)`'s price.
    /// Reverts `PriceBeyondLimit` when that price is above `limitPriceE18` for a buy (the fund is
    /// long) or below it for a sell, `NothingOffered` when the fund has no position there,
    /// `OfferExceeded` beyond it, and with the clearinghouse's error when a trade rule refuses.
    function take(uint256 marketId, uint256 size, uint256 limitPriceE18)
        external
        returns (int256 takerSizeDelta, uint256 priceE18);

    /// @notice Owner only: the discount, ≤ `MAX_DISCOUNT_BPS`.
    function setDiscount(uint16 discountBps) external;

    // ================================================================ VIEWS
    /// @notice The hard bound on the discount: 5%.
    function MAX_DISCOUNT_BPS() external view returns (uint16);

    function clearinghouse() external view returns (IClearinghouse);

    function discountBps() external view returns (uint16);

    /// @notice What is offered now in `marketId`: the size a taker would take, signed as the taker's
    /// change (the fund's position), and the price (0 when the market's price is unusable).
    function offer(uint256 marketId) external view returns (int256 takerSizeMax, uint256 priceE18);
}
