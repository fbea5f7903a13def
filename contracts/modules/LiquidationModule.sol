// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ClearinghouseBase} from "../ClearinghouseBase.sol";
import {ILiquidation} from "../interfaces/IClearinghouse.sol";
import {IMarginProofs} from "../interfaces/IMarginProofs.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {MarginMath} from "../libraries/MarginMath.sol";

/// @title LiquidationModule
/// @notice Liquidation, insolvency resolution and their preview (see ILiquidation). Runs only
/// through the clearinghouse's `delegatecall`, on the clearinghouse's storage; it keeps no state of
/// its own, so a direct call sees empty storage and can change nothing that matters.
contract LiquidationModule is ILiquidation, ClearinghouseBase, ReentrancyGuardTransient {
    using SafeCast for uint256;
    using SafeCast for int256;
    using MarginMath for int256;
    using MarginMath for uint256;

    struct LiquidationStep {
        uint256 priceE18;
        int256 sizeBefore;
        int256 sizeAfter;
        uint256 closeSize;
        int256 cashChangeWad;
        uint256 penaltyWad;
        uint256 keeperRewardWad;
        int256 fundingIndexWad;
    }

    // ================================================================ CONSTRUCTOR
    constructor(IOracleRouter oracle_, address insuranceFund_) ClearinghouseBase(oracle_, insuranceFund_) {}

    // ================================================================ EXTERNAL
    /// @inheritdoc ILiquidation
    function liquidate(address account_, uint256 marketId, uint256 maxCloseSize)
        external
        nonReentrant
        returns (uint256 closedSize, uint256 keeperRewardWad)
    {
        if (account_ == msg.sender) revert SelfLiquidation(account_);
        if (account_ == insuranceFund) revert BackstopNotLiquidatable(account_);
        if (maxCloseSize == 0) revert ZeroAmount();
        MarketConfig memory m = _listedMarket(marketId);
        int256 size = _positions[account_][marketId].size;
        if (size == 0) revert NoPosition(account_, marketId);

        Account memory a = _accounts[account_];
        // The sequencer and this market's own price are required (C07, I14); any other broken
        // feed is quoted against the account (I18), so it cannot shield this market.
        Prices memory p = _readPrices(_priceMask(a), 1 << m.oracleAsset);
        LiquidationStep memory step;
        // I28: funding first. Settling moves what health already counts into cash.
        step.fundingIndexWad = _accrueFunding(marketId, p.lowE18[m.oracleAsset]);
        _settleFunding(account_, marketId, size, step.fundingIndexWad);
        a = _accounts[account_];
        Health memory h = _healthAt(account_, a, p);
        if (h.equityWad >= h.maintenanceMarginWad.toInt256()) {
            revert AccountHealthy(account_, h.equityWad, h.maintenanceMarginWad);
        }
        step.priceE18 = p.lowE18[m.oracleAsset];
        step.sizeBefore = size;
        (step.closeSize,) = _closeSize(size, step.priceE18, h);
        bool chunk = step.closeSize > maxCloseSize;
        if (chunk) {
            // A keeper may close less than allowed, but never leave dust nobody will pay to close.
            step.closeSize = maxCloseSize;
            uint256 remainingWad = (size.abs() - maxCloseSize).mulDivDown(step.priceE18, MarginMath.WAD);
            if (remainingWad < _liquidation.minPositionNotionalWad) {
                revert LiquidationLeavesDust(remainingWad, _liquidation.minPositionNotionalWad);
            }
        }
        bool ok;
        (step.penaltyWad, step.keeperRewardWad, ok) = _penalty(size, step.closeSize, step.priceE18, m, h.equityWad);
        if (!ok) revert LiquidationTooSmall(step.closeSize);
        // I30: after a chunk (less than allowed), nothing more is rewarded for the account in this
        // block; `a` is stored by the execution.
        uint16 tag = _blockTag();
        if (a.chunkBlockTag == tag) step.keeperRewardWad = 0;
        else if (chunk) a.chunkBlockTag = tag;
        _executeLiquidation(account_, marketId, m, a, step);

        if (a.marketMask == 0) {
            // Equity after, from the health already computed: the closed size was realised at the
            // oracle price (cash change plus the change in its mark), less the penalty.
            int256 equityAfter = h.equityWad + step.cashChangeWad
                + step.sizeAfter.mulDivFloor(step.priceE18, MarginMath.WAD)
                - size.mulDivFloor(step.priceE18, MarginMath.WAD) - step.penaltyWad.toInt256();
            if (equityAfter < 0) _resolveInsolvency(account_, a, p);
        }
        return (step.closeSize, step.keeperRewardWad);
    }

    /// @inheritdoc ILiquidation
    function resolveInsolvency(address account_) external nonReentrant {
        if (account_ == insuranceFund) revert BackstopNotLiquidatable(account_);
        Account memory a = _accounts[account_];
        if (a.marketMask != 0) revert HasOpenPositions(account_, a.marketMask);
        Prices memory p = _readPrices(_priceMask(a), 0);
        int256 equity = _healthAt(account_, a, p).equityWad;
        if (equity >= 0) revert NotInsolvent(account_, equity);
        _resolveInsolvency(account_, a, p);
    }

    /// @inheritdoc ILiquidation
    function bookDeficit() external nonReentrant returns (uint256 addedWad) {
        Account memory f = _accounts[insuranceFund];
        (Health memory h,) = _staticHealthAt(insuranceFund, f, _readPrices(_priceMask(f), 0));
        uint256 booked = deficitWad;
        if (h.equityWad >= -booked.toInt256()) revert NoUnbookedDeficit(h.equityWad, booked);
        uint256 implied = uint256(-h.equityWad);
        addedWad = implied - booked;
        deficitWad = implied;
        emit DeficitBooked(addedWad, implied, h.equityWad);
    }

    /// @inheritdoc ILiquidation
    /// @dev Runs on the clearinghouse's storage, so `address(this)` is the clearinghouse, which
    /// knows its owner (this module has no owner slot of its own to read).
    function setMarginProofs(IMarginProofs marginProofs_) external {
        if (msg.sender != Ownable(address(this)).owner()) revert Ownable.OwnableUnauthorizedAccount(msg.sender);
        marginProofs = marginProofs_;
        emit MarginProofsSet(address(marginProofs_));
    }

    /// @inheritdoc ILiquidation
    /// @dev The clearinghouse checks the owner before it delegates here; its constructor delegates
    /// here once, with the deployment's parameters.
    function configureLiquidation(LiquidationConfig calldata c) external {
        if (
            c.closeFactorBps == 0 || c.closeFactorBps > MarginMath.BPS || c.fullLiquidationHealthBps > MarginMath.BPS
                || c.keeperShareBps > MarginMath.BPS || c.maxPositionsPerAccount == 0
                || c.maxPositionsPerAccount > MAX_MARKETS
        ) {
            revert InvalidLiquidationConfig(
                c.closeFactorBps, c.fullLiquidationHealthBps, c.keeperShareBps, c.maxPositionsPerAccount
            );
        }
        _liquidation = c;
        emit LiquidationConfigured(
            c.closeFactorBps,
            c.fullLiquidationHealthBps,
            c.keeperShareBps,
            c.maxPositionsPerAccount,
            c.minPositionNotionalWad,
            c.keeperRewardCapWad
        );
    }

    // ================================================================ VIEWS
    /// @inheritdoc ILiquidation
    function previewLiquidation(address account_, uint256 marketId)
        external
        view
        nonReentrantView
        returns (LiquidationPreview memory preview)
    {
        MarketConfig memory m = _markets[marketId];
        int256 size = _positions[account_][marketId].size;
        if (account_ == insuranceFund) preview.status = PreviewStatus.BACKSTOP;
        else if (!m.listed) preview.status = PreviewStatus.UNKNOWN_MARKET;
        else if (size == 0) preview.status = PreviewStatus.NO_POSITION;
        if (preview.status != PreviewStatus.LIQUIDATABLE) return preview;

        Account memory a = _accounts[account_];
        (Prices memory p, bool sequencerUp) = _peekPrices(_priceMask(a));
        if (!sequencerUp) {
            preview.status = PreviewStatus.SEQUENCER_DOWN;
            return preview;
        }
        if (p.unusableMask & (1 << m.oracleAsset) != 0) {
            preview.status = PreviewStatus.PRICE_UNAVAILABLE;
            return preview;
        }
        Health memory h = _healthAt(account_, a, p);
        preview.equityWad = h.equityWad;
        preview.maintenanceMarginWad = h.maintenanceMarginWad;
        preview.priceE18 = p.lowE18[m.oracleAsset];
        if (h.equityWad >= h.maintenanceMarginWad.toInt256()) {
            preview.status = PreviewStatus.HEALTHY;
            return preview;
        }
        (preview.closeSize, preview.fullLiquidation) = _closeSize(size, preview.priceE18, h);
        (preview.penaltyWad, preview.keeperRewardWad,) =
            _penalty(size, preview.closeSize, preview.priceE18, m, h.equityWad);
        if (a.chunkBlockTag == _blockTag()) preview.keeperRewardWad = 0;
    }

    // ================================================================ INTERNAL
    /// @dev Moves the closed size to the backstop at the oracle price and pays the penalty: the
    /// keeper's share to the keeper's cash (no keeper capital needed), the rest to the insurance fund.
    /// Updates `a` in memory and storage.
    function _executeLiquidation(
        address account_,
        uint256 marketId,
        MarketConfig memory m,
        Account memory a,
        LiquidationStep memory step
    ) internal {
        int256 delta = step.sizeBefore > 0 ? -step.closeSize.toInt256() : step.closeSize.toInt256();
        step.sizeAfter = step.sizeBefore + delta;
        step.cashChangeWad = -delta.mulDivCeil(step.priceE18, MarginMath.WAD);
        _positions[account_][marketId].size = step.sizeAfter.toInt128();
        a.cashWad = (a.cashWad + step.cashChangeWad - step.penaltyWad.toInt256()).toInt128();
        a.positionNonce += 1;
        if (step.sizeAfter == 0) a.marketMask &= ~uint32(1 << marketId);
        _accounts[account_] = a;

        uint128 openInterest = _openInterestAfter(m.openInterestLong, step.sizeBefore, step.sizeAfter);
        uint64 backstopNonce;
        (backstopNonce, openInterest) = _moveToBackstop(
            marketId, -delta, step.priceE18, step.penaltyWad - step.keeperRewardWad, openInterest, step.fundingIndexWad
        );
        _markets[marketId].openInterestLong = openInterest;
        if (step.keeperRewardWad != 0) _creditCash(msg.sender, step.keeperRewardWad);
        emit Liquidate(
            account_,
            marketId,
            msg.sender,
            delta,
            step.priceE18,
            step.penaltyWad,
            step.keeperRewardWad,
            step.sizeAfter,
            a.positionNonce,
            backstopNonce
        );
    }

    /// @dev The most one liquidation may close: a close-factor share, or all of it when the
    /// position is dust, the remainder would be dust (THREATS A10), or the account is deeply under
    /// water (equity below `fullLiquidationHealthBps` of maintenance margin).
    function _closeSize(int256 size, uint256 priceE18, Health memory h)
        internal
        view
        returns (uint256 closeSize, bool full)
    {
        LiquidationConfig memory cfg = _liquidation;
        uint256 absSize = size.abs();
        uint256 minNotional = cfg.minPositionNotionalWad;
        full = absSize.mulDivDown(priceE18, MarginMath.WAD) <= minNotional
            || h.equityWad < h.maintenanceMarginWad.mulDivDown(cfg.fullLiquidationHealthBps, MarginMath.BPS).toInt256();
        if (!full) {
            closeSize = absSize.mulDivUp(cfg.closeFactorBps, MarginMath.BPS);
            full = (absSize - closeSize).mulDivDown(priceE18, MarginMath.WAD) < minNotional;
        }
        if (full) closeSize = absSize;
    }

    /// @dev Penalty on the closed notional, rounded up, but never more than the closure frees
    /// (MM released plus the equity change of realising at the oracle price, both exact), so a
    /// liquidation never leaves MM − equity larger, not even by a rounding wei (SPEC I8), and never
    /// more than the account's equity after that realisation (I24): the penalty, and so the
    /// keeper's share, is paid from what the account has, never as negative cash the insurance
    /// fund later covers. `ok` is false when even a zero penalty could not keep I8 (closes of a few
    /// wei). The keeper's share is rounded down and capped (I9).
    function _penalty(int256 size, uint256 closeSize, uint256 priceE18, MarketConfig memory m, int256 equityWad)
        internal
        view
        returns (uint256 penaltyWad, uint256 keeperRewardWad, bool ok)
    {
        (uint256 releasedWad, int256 realisedWad) = _closeEffects(size, closeSize, priceE18, m.mmBps);
        int256 freed = releasedWad.toInt256() + realisedWad;
        if (freed < 0) return (0, 0, false);
        ok = true;
        int256 payable_ = equityWad + realisedWad;
        if (payable_ <= 0) return (0, 0, ok);
        penaltyWad = closeSize.mulDivUp(priceE18 * m.liquidationPenaltyBps, MarginMath.WAD * MarginMath.BPS);
        if (penaltyWad > uint256(freed)) penaltyWad = uint256(freed);
        if (penaltyWad > uint256(payable_)) penaltyWad = uint256(payable_);
        keeperRewardWad = penaltyWad.mulDivDown(_liquidation.keeperShareBps, MarginMath.BPS);
        if (keeperRewardWad > _liquidation.keeperRewardCapWad) keeperRewardWad = _liquidation.keeperRewardCapWad;
    }

    /// @dev This block as an account's `chunkBlockTag`: never 0, so a fresh account has none. Two
    /// blocks 65,535 apart share a tag; the cost is one unrewarded liquidation, never a double pay.
    function _blockTag() internal view returns (uint16) {
        return uint16(block.number % type(uint16).max + 1);
    }

    /// @dev What closing `closeSize` at the oracle price does, exactly: the maintenance margin it
    /// releases, and the equity change of realising it (cash received minus the mark given up; at
    /// most zero, the rounding the account pays).
    function _closeEffects(int256 size, uint256 closeSize, uint256 priceE18, uint256 mmBps)
        internal
        pure
        returns (uint256 releasedWad, int256 realisedWad)
    {
        int256 delta = size > 0 ? -closeSize.toInt256() : closeSize.toInt256();
        int256 sizeAfter = size + delta;
        uint256 ratePerWad = priceE18 * mmBps;
        releasedWad = size.abs().mulDivUp(ratePerWad, MarginMath.WAD * MarginMath.BPS)
            - sizeAfter.abs().mulDivUp(ratePerWad, MarginMath.WAD * MarginMath.BPS);
        realisedWad = sizeAfter.mulDivFloor(priceE18, MarginMath.WAD) - size.mulDivFloor(priceE18, MarginMath.WAD)
            - delta.mulDivCeil(priceE18, MarginMath.WAD);
    }

    /// @dev The backstop (insurance fund account) settles its funding in the market (I28), takes
    /// `delta` at the oracle price and is paid `insuranceCutWad`. Exempt from position caps: it must always be able to absorb. Returns its
    /// nonce and the market's open interest after its side.
    function _moveToBackstop(
        uint256 marketId,
        int256 delta,
        uint256 priceE18,
        uint256 insuranceCutWad,
        uint128 openInterest,
        int256 fundingIndexWad
    ) internal returns (uint64 nonce, uint128 openInterestAfter) {
        int256 sizeBefore = _positions[insuranceFund][marketId].size;
        _settleFunding(insuranceFund, marketId, sizeBefore, fundingIndexWad);
        Account memory b = _accounts[insuranceFund];
        int256 sizeAfter = sizeBefore + delta;
        _positions[insuranceFund][marketId].size = sizeAfter.toInt128();
        b.cashWad = (b.cashWad - delta.mulDivCeil(priceE18, MarginMath.WAD) + insuranceCutWad.toInt256()).toInt128();
        b.positionNonce += 1;
        if (sizeAfter == 0) b.marketMask &= ~uint32(1 << marketId);
        else b.marketMask |= uint32(1 << marketId);
        _accounts[insuranceFund] = b;
        return (b.positionNonce, _openInterestAfter(openInterest, sizeBefore, sizeAfter));
    }

    /// @dev S6: the account's collateral and its negative cash (the debt) both move to the insurance
    /// fund, so the books stay whole. The fund covers the debt as far as its equity (cash, positions
    /// and collateral, valued as a liquidation values them, I18) stays non-negative; the rest is
    /// booked as deficit. Accounts without positions never absorb any of it (D16).
    function _resolveInsolvency(address account_, Account memory a, Prices memory p) internal {
        Account storage fund = _accounts[insuranceFund];
        for (uint256 mask = a.collateralMask; mask != 0; mask &= mask - 1) {
            uint256 assetId = MarginMath.lowestBit(mask);
            uint256 amount = _balances[account_][assetId];
            CollateralConfig storage c = _collaterals[assetId];
            _balances[account_][assetId] = 0;
            _balances[insuranceFund][assetId] += amount;
            emit CollateralSeized(
                account_,
                assetId,
                amount,
                (amount * _scale(c.decimals)).mulDivDown(p.lowE18[c.oracleAsset], MarginMath.WAD)
            );
        }
        fund.collateralMask |= a.collateralMask;
        uint256 debt = a.cashWad < 0 ? uint256(-int256(a.cashWad)) : 0;
        fund.cashWad = (fund.cashWad - debt.toInt256()).toInt128();
        Account storage stored = _accounts[account_];
        stored.collateralMask = 0;
        stored.cashWad = 0;

        Account memory f = fund;
        (Health memory fundHealth,) = _staticHealthAt(insuranceFund, f, _readPrices(_priceMask(f), 0));
        uint256 shortfall = fundHealth.equityWad < 0 ? uint256(-fundHealth.equityWad) : 0;
        uint256 deficit = shortfall < debt ? shortfall : debt;
        deficitWad += deficit;
        emit InsolvencyResolved(account_, debt, debt - deficit, deficit);
    }
}
