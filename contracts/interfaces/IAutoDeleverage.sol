// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearinghouse} from "./IClearinghouse.sol";

/// @title IAutoDeleverage
/// @notice The last resort (SPEC I32): when the insurance fund's equity no longer covers the
/// maintenance margin of what it holds, anyone may close the fund's position in a market against
/// opposite positions, at the oracle price, no fee, no discount. The counterparties are given by the
/// caller, ranked off-chain by the documented rule (the shipped backstop ranks them, see
/// `offchain/backstop.py`): highest margin ratio equity / MM first, the accounts best able to give up
/// the position (profit raises equity). The contract checks what it can check cheaply: every
/// account is on the opposite side, holds at least its initial margin (equity ≥ IM, so no account
/// near liquidation is deleveraged), and the list is in non-increasing equity / MM order. It closes
/// each account's position up to what the fund still holds and stops as soon as the fund's equity
/// covers its maintenance margin again. Each close is a clearinghouse trade where both sides only
/// reduce (SPEC I6): exits, deposits and liquidations are never blocked by it.
///
/// Trust assumptions: the owner registers this contract as a matcher (it trades the fund's and the
/// counterparties' accounts, only ever reducing both). The ranking is enforced within the list, not
/// across all accounts: a caller may leave the best-ranked accounts out. What a caller gains by it
/// is the choice of whom to deleverage among healthy opposite accounts at the oracle price, which
/// costs those accounts nothing at that price but their exposure.
interface IAutoDeleverage {
    // ================================================================ ERRORS
    error FundCovered(int256 fundEquityWad, uint256 fundMaintenanceMarginWad);
    error NothingToDeleverage(uint256 marketId);
    error NotOpposite(address account, uint256 marketId, int256 size);
    error BelowInitialMargin(address account, int256 equityWad, uint256 initialMarginWad);
    error RankingBroken(address account, address previous);

    // ================================================================ EVENTS
    /// @notice `account`'s position in `marketId` moved by `sizeDelta` toward zero against the fund
    /// (which moved by −sizeDelta to `fundSizeAfter`), at the oracle price `priceE18`.
    event AutoDeleveraged(
        uint256 indexed marketId, address indexed account, int256 sizeDelta, uint256 priceE18, int256 fundSizeAfter
    );

    // ================================================================ ACTIONS
    /// @notice Deleverages `accounts` (in non-increasing equity / MM order) against the fund's
    /// position in `marketId` while the fund's equity is below its maintenance margin. Permissionless.
    /// Reverts `FundCovered` if it is not, `NothingToDeleverage` if the fund holds nothing there, and
    /// with the router's reason if the market's price is unusable. Returns the size closed.
    function adl(uint256 marketId, address[] calldata accounts) external returns (uint256 closedSize);

    // ================================================================ VIEWS
    function clearinghouse() external view returns (IClearinghouse);
}
