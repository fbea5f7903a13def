// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAutoDeleverage} from "../interfaces/IAutoDeleverage.sol";
import {IClearinghouse, IClearinghouseBase} from "../interfaces/IClearinghouse.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {MarginMath} from "../libraries/MarginMath.sol";

/// @title AutoDeleverage
/// @notice The insurance fund's last resort (see IAutoDeleverage): a matcher whose only trade
/// closes the fund's position against ranked opposite positions at the oracle price. It holds
/// nothing; the clearinghouse checks every trade rule.
contract AutoDeleverage is IAutoDeleverage {
    using MarginMath for int256;

    /// @inheritdoc IAutoDeleverage
    IClearinghouse public immutable clearinghouse;
    IOracleRouter internal immutable _oracle;
    address internal immutable _fund;

    constructor(IClearinghouse clearinghouse_) {
        clearinghouse = clearinghouse_;
        _oracle = clearinghouse_.oracle();
        _fund = clearinghouse_.insuranceFund();
    }

    /// @inheritdoc IAutoDeleverage
    function adl(uint256 marketId, address[] calldata accounts) external returns (uint256 closedSize) {
        int256 fundSize = clearinghouse.position(_fund, marketId);
        if (fundSize == 0) revert NothingToDeleverage(marketId);
        IClearinghouseBase.Health memory f = clearinghouse.accountHealth(_fund);
        if (f.equityWad >= int256(f.maintenanceMarginWad)) revert FundCovered(f.equityWad, f.maintenanceMarginWad);
        uint256 priceE18 = _oracle.priceE18(clearinghouse.market(marketId).oracleAsset);

        IClearinghouseBase.Health memory previous;
        for (uint256 i; i < accounts.length && fundSize != 0; ++i) {
            address account = accounts[i];
            int256 size = clearinghouse.position(account, marketId);
            if (size == 0 || (size > 0) == (fundSize > 0)) revert NotOpposite(account, marketId, size);
            IClearinghouseBase.Health memory h = clearinghouse.accountHealth(account);
            if (h.equityWad < int256(h.initialMarginWad)) {
                revert BelowInitialMargin(account, h.equityWad, h.initialMarginWad);
            }
            // Non-increasing equity / MM (both equities ≥ IM > 0 here), cross-multiplied exactly.
            if (
                i != 0
                    && uint256(h.equityWad) * previous.maintenanceMarginWad
                        > uint256(previous.equityWad) * h.maintenanceMarginWad
            ) revert RankingBroken(account, accounts[i - 1]);
            previous = h;

            uint256 close = size.abs() < fundSize.abs() ? size.abs() : fundSize.abs();
            int256 accountDelta = size > 0 ? -int256(close) : int256(close);
            clearinghouse.settleTrade(marketId, account, _fund, accountDelta, priceE18);
            fundSize -= accountDelta;
            closedSize += close;
            emit AutoDeleveraged(marketId, account, accountDelta, priceE18, fundSize);

            f = clearinghouse.accountHealth(_fund);
            if (f.equityWad >= int256(f.maintenanceMarginWad)) break;
        }
    }
}
