// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ClearinghouseBase} from "./ClearinghouseBase.sol";
import {IClearinghouse, IFunding, ILiquidation} from "./interfaces/IClearinghouse.sol";
import {IAttestationVerifier} from "./interfaces/IAttestationVerifier.sol";
import {IMarginProofs} from "./interfaces/IMarginProofs.sol";
import {IOracleRouter} from "./interfaces/IOracleRouter.sol";
import {MarginMath} from "./libraries/MarginMath.sol";
import {LiquidationModule} from "./modules/LiquidationModule.sol";
import {FundingModule} from "./modules/FundingModule.sol";

/// @title Clearinghouse
/// @notice Holds collateral, records perpetual positions and enforces margin (see IClearinghouse).
/// Liquidation lives in `LiquidationModule`, funding in `FundingModule`, both reached by
/// `delegatecall` on this contract's storage.
/// `ClearinghouseBase` comes first among the bases so that its storage layout is the module's.
contract Clearinghouse is IClearinghouse, ClearinghouseBase, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;
    using SafeCast for int256;
    using MarginMath for int256;
    using MarginMath for uint256;

    // ================================================================ STORAGE
    // All storage is declared in ClearinghouseBase, shared with the modules; none here.
    /// @inheritdoc IClearinghouse
    ILiquidation public immutable liquidationModule;
    /// @inheritdoc IClearinghouse
    IFunding public immutable fundingModule;

    // ================================================================ CONSTRUCTOR
    /// @dev The module must have been deployed with the same oracle and insurance fund: its
    /// immutables are read in its own code, not from this contract's storage.
    constructor(
        address owner_,
        IOracleRouter oracle_,
        IERC20 quoteToken,
        uint128 quoteDepositCap,
        address insuranceFund_,
        LiquidationConfig memory liquidation_,
        LiquidationModule liquidationModule_,
        FundingModule fundingModule_
    ) ClearinghouseBase(oracle_, insuranceFund_) Ownable(owner_) {
        if (liquidationModule_.oracle() != oracle_ || liquidationModule_.insuranceFund() != insuranceFund_) {
            revert ModuleMismatch(address(liquidationModule_));
        }
        if (fundingModule_.oracle() != oracle_ || fundingModule_.insuranceFund() != insuranceFund_) {
            revert ModuleMismatch(address(fundingModule_));
        }
        liquidationModule = liquidationModule_;
        fundingModule = fundingModule_;
        _listCollateral(quoteToken, 0, uint16(MarginMath.BPS), quoteDepositCap);
        _callModule(address(liquidationModule_), abi.encodeCall(LiquidationModule.configureLiquidation, (liquidation_)));
    }

    modifier onlyGuardian() {
        if (msg.sender != guardian && msg.sender != owner()) revert NotGuardian(msg.sender);
        _;
    }

    // ================================================================ EXTERNAL: ACCOUNTS
    /// @inheritdoc IClearinghouse
    function deposit(address account_, uint256 assetId, uint256 amount)
        external
        nonReentrant
        returns (uint256 credited)
    {
        if (account_ == address(0)) revert ZeroAddress();
        if (amount == 0) revert ZeroAmount();
        CollateralConfig storage c = _listedCollateral(assetId);
        IERC20 token = c.token;
        // Credit what arrived, not what was asked: fee-on-transfer tokens deliver less (THREATS A03).
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        credited = token.balanceOf(address(this)) - before;
        if (credited == 0) revert ZeroAmount();
        uint256 totalAfter = c.totalDeposited + credited;
        if (totalAfter > c.depositCap) revert DepositCapExceeded(assetId, totalAfter, c.depositCap);
        c.totalDeposited = totalAfter.toUint128();

        Account storage a = _accounts[account_];
        if (assetId == QUOTE) {
            a.cashWad = (a.cashWad + (credited * _scale(c.decimals)).toInt256()).toInt128();
        } else {
            _balances[account_][assetId] += credited;
            a.collateralMask |= uint16(1 << assetId);
        }
        emit Deposit(account_, assetId, msg.sender, amount, credited);
    }

    /// @inheritdoc IClearinghouse
    function withdraw(uint256 assetId, uint256 amount, address to) external nonReentrant {
        _withdraw(assetId, amount, to);
    }

    /// @inheritdoc IClearinghouse
    function withdrawWithAttestation(
        uint256 assetId,
        uint256 amount,
        address to,
        IAttestationVerifier.MarginBatch calldata batch,
        bytes calldata signatures
    ) external nonReentrant {
        // S3: the engine's fresh view is applied in the same transaction as the check that needs it.
        _submitAttestation(batch, signatures);
        _withdraw(assetId, amount, to);
    }

    /// @inheritdoc IClearinghouse
    function settleTrade(uint256 marketId, address taker, address maker, int256 takerSizeDelta, uint256 priceE18)
        external
        nonReentrant
    {
        _settleTrade(marketId, taker, maker, takerSizeDelta, priceE18);
    }

    /// @inheritdoc IClearinghouse
    function settleTradeWithAttestation(
        uint256 marketId,
        address taker,
        address maker,
        int256 takerSizeDelta,
        uint256 priceE18,
        IAttestationVerifier.MarginBatch calldata batch,
        bytes calldata signatures
    ) external nonReentrant {
        if (!isMatcher[msg.sender]) revert NotMatcher(msg.sender);
        _submitAttestation(batch, signatures);
        _settleTrade(marketId, taker, maker, takerSizeDelta, priceE18);
    }

    // ================================================================ EXTERNAL: MODULES
    /// @inheritdoc ILiquidation
    /// @dev Delegated; the module holds the reentrancy lock (the same transient slot as here).
    function liquidate(address, uint256, uint256) external returns (uint256, uint256) {
        _delegate(address(liquidationModule), 0);
    }

    /// @inheritdoc ILiquidation
    function resolveInsolvency(address) external {
        _delegate(address(liquidationModule), 0);
    }

    /// @inheritdoc ILiquidation
    function bookDeficit() external returns (uint256) {
        _delegate(address(liquidationModule), 0);
    }

    /// @inheritdoc IFunding
    /// @dev Delegated; the module holds the reentrancy lock.
    function settleFunding(address, uint256) external returns (int256) {
        _delegate(address(fundingModule), 0);
    }

    /// @inheritdoc IFunding
    function configureFunding(uint256, uint16, uint32) external onlyOwner {
        _delegate(address(fundingModule), 0);
    }

    /// @inheritdoc ILiquidation
    /// @dev Delegated; the module asks this contract for its owner.
    function setMarginProofs(IMarginProofs) external {
        _delegate(address(liquidationModule), 0);
    }

    /// @inheritdoc ILiquidation
    /// @dev A view cannot `delegatecall`: this contract `staticcall`s its own `viewDelegate`, which
    /// delegates; the static context guarantees the module writes nothing.
    function previewLiquidation(address, uint256) external view returns (LiquidationPreview memory) {
        (bool ok, bytes memory reply) = address(this).staticcall(abi.encodePacked(this.viewDelegate.selector, msg.data));
        assembly ("memory-safe") {
            switch ok
            case 0 { revert(add(reply, 0x20), mload(reply)) }
            default { return(add(reply, 0x20), mload(reply)) }
        }
    }

    /// @notice Internal plumbing of the module views: callable by this contract only.
    function viewDelegate() external {
        if (msg.sender != address(this)) revert OnlySelf(msg.sender);
        _delegate(address(liquidationModule), 4);
    }

    // ================================================================ INTERNAL: ACTIONS
    function _withdraw(uint256 assetId, uint256 amount, address to) internal {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert ZeroAddress();
        CollateralConfig storage c = _listedCollateral(assetId);
        Account memory a = _accounts[msg.sender];
        if (assetId == QUOTE) {
            int256 cashAfter = a.cashWad - (amount * _scale(c.decimals)).toInt256();
            // Without positions or other collateral nothing could back a negative balance.
            if (cashAfter < 0 && a.marketMask == 0 && a.collateralMask == 0) {
                revert InsufficientBalance(assetId, _cashInTokens(a.cashWad, c.decimals), amount);
            }
            a.cashWad = cashAfter.toInt128();
        } else {
            uint256 balance = _balances[msg.sender][assetId];
            if (balance < amount) revert InsufficientBalance(assetId, balance, amount);
            _balances[msg.sender][assetId] = balance - amount;
            if (balance == amount) a.collateralMask &= ~uint16(1 << assetId);
        }
        _accounts[msg.sender] = a;
        // S4: with no positions and non-negative cash, equity ≥ 0 = IM without reading any price, so
        // an account can always leave, oracle down or not (Morpho `canWithdrawCollateralAll`).
        if (a.marketMask != 0 || a.cashWad < 0) _requireInitialMargin(msg.sender, a);

        IERC20 token = c.token;
        // A token whose balances shrink (rebasing) must not let early leavers take later ones' funds.
        uint256 held = token.balanceOf(address(this));
        if (held < c.totalDeposited || amount > c.totalDeposited) {
            revert CollateralShortfall(assetId, held, c.totalDeposited);
        }
        c.totalDeposited -= uint128(amount);
        token.safeTransfer(to, amount);
        emit Withdraw(msg.sender, assetId, to, amount);
    }

    function _settleTrade(uint256 marketId, address taker, address maker, int256 takerSizeDelta, uint256 priceE18)
        internal
    {
        if (!isMatcher[msg.sender]) revert NotMatcher(msg.sender);
        if (taker == maker) revert SelfTrade(taker);
        if (taker == address(0) || maker == address(0)) revert ZeroAddress();
        if (takerSizeDelta == 0 || priceE18 == 0) revert ZeroAmount();
        MarketConfig storage m = _listedMarket(marketId);

        uint256 oiBefore = m.openInterestLong;
        SideChange memory t = _applyTrade(taker, marketId, m, takerSizeDelta, priceE18);
        SideChange memory k = _applyTrade(maker, marketId, m, -takerSizeDelta, priceE18);
        uint256 oiAfter = m.openInterestLong;
        if (oiAfter > oiBefore && oiAfter > m.openInterestCap) {
            revert OpenInterestCapExceeded(marketId, oiAfter, m.openInterestCap);
        }

        (uint256 oraclePrice, bool priced) = _checkBand(marketId, m, priceE18, t.reduces && k.reduces);
        _callModule(
            address(fundingModule),
            abi.encodeCall(
                FundingModule.onTrade,
                (marketId, taker, t.sizeBefore, maker, k.sizeBefore, priceE18, oraclePrice, priced)
            )
        );
        _checkSide(taker, t, m, priceE18, oraclePrice, priced);
        _checkSide(maker, k, m, priceE18, oraclePrice, priced);
        emit TradeSettled(marketId, taker, maker, takerSizeDelta, priceE18, t.sizeAfter, k.sizeAfter, t.nonce, k.nonce);
    }

    // ================================================================ EXTERNAL: ADMIN
    /// @inheritdoc IClearinghouse
    function listCollateral(IERC20 token, uint8 oracleAsset, uint16 weightBps, uint128 depositCap)
        external
        onlyOwner
        returns (uint256 assetId)
    {
        return _listCollateral(token, oracleAsset, weightBps, depositCap);
    }

    /// @inheritdoc IClearinghouse
    function configureCollateral(uint256 assetId, uint16 weightBps, uint128 depositCap) external onlyOwner {
        CollateralConfig storage c = _listedCollateral(assetId);
        _checkCollateralParams(assetId, weightBps, depositCap);
        c.weightBps = weightBps;
        c.depositCap = depositCap;
        emit CollateralConfigured(assetId, weightBps, depositCap);
    }

    /// @inheritdoc IClearinghouse
    function listMarket(
        uint8 oracleAsset,
        uint16 imBps,
        uint16 mmBps,
        uint16 liquidationPenaltyBps,
        uint16 priceBandBps,
        uint128 maxPositionSize,
        uint128 openInterestCap
    ) external onlyOwner returns (uint256 marketId) {
        marketId = marketCount;
        if (marketId >= MAX_MARKETS) revert TooManyMarkets(marketId + 1, MAX_MARKETS);
        _requireOracleAsset(oracleAsset);
        marketCount = marketId + 1;
        MarketConfig storage m = _markets[marketId];
        m.oracleAsset = oracleAsset;
        m.listed = true;
        emit MarketListed(marketId, oracleAsset);
        _configureMarket(
            marketId, m, imBps, mmBps, liquidationPenaltyBps, priceBandBps, maxPositionSize, openInterestCap
        );
        _callModule(address(fundingModule), abi.encodeCall(FundingModule.onMarketListed, (marketId)));
    }

    /// @inheritdoc IClearinghouse
    function configureMarket(
        uint256 marketId,
        uint16 imBps,
        uint16 mmBps,
        uint16 liquidationPenaltyBps,
        uint16 priceBandBps,
        uint128 maxPositionSize,
        uint128 openInterestCap
    ) external onlyOwner {
        MarketConfig storage m = _listedMarket(marketId);
        _configureMarket(
            marketId, m, imBps, mmBps, liquidationPenaltyBps, priceBandBps, maxPositionSize, openInterestCap
        );
    }

    /// @inheritdoc ILiquidation
    /// @dev Delegated: the module validates and stores (the constructor's first call too).
    function configureLiquidation(LiquidationConfig calldata) external onlyOwner {
        _delegate(address(liquidationModule), 0);
    }

    /// @inheritdoc IClearinghouse
    function setMatcher(address matcher, bool allowed) external onlyOwner {
        if (matcher == address(0)) revert ZeroAddress();
        isMatcher[matcher] = allowed;
        emit MatcherSet(matcher, allowed);
    }

    /// @inheritdoc IClearinghouse
    function setAttestor(IAttestationVerifier attestor_) external onlyOwner {
        attestor = attestor_;
        emit AttestorSet(address(attestor_));
    }

    /// @inheritdoc IClearinghouse
    function setGuardian(address guardian_) external onlyOwner {
        guardian = guardian_;
        emit GuardianSet(guardian_);
    }

    /// @inheritdoc IClearinghouse
    function pause() external onlyGuardian {
        paused = true;
        emit PauseSet(true);
    }

    /// @inheritdoc IClearinghouse
    function unpause() external onlyOwner {
        paused = false;
        emit PauseSet(false);
    }

    // ================================================================ VIEWS
    /// @inheritdoc IClearinghouse
    function collateral(uint256 assetId) external view returns (CollateralConfig memory) {
        return _collaterals[assetId];
    }

    /// @inheritdoc IClearinghouse
    function market(uint256 marketId) external view returns (MarketConfig memory) {
        return _markets[marketId];
    }

    /// @inheritdoc IClearinghouse
    function liquidationConfig() external view returns (LiquidationConfig memory) {
        return _liquidation;
    }

    /// @inheritdoc IClearinghouse
    function account(address account_) external view returns (Account memory) {
        return _accounts[account_];
    }

    /// @inheritdoc IClearinghouse
    function position(address account_, uint256 marketId) external view returns (int256) {
        return _positions[account_][marketId].size;
    }

    /// @inheritdoc IClearinghouse
    function fundingIndexOf(address account_, uint256 marketId) external view returns (int256) {
        return _positions[account_][marketId].fundingIndexWad;
    }

    /// @inheritdoc IClearinghouse
    /// @dev For the quote token: the non-negative part of the cash balance, in token units, rounded down.
    function collateralBalance(address account_, uint256 assetId) external view returns (uint256) {
        if (assetId == QUOTE) return _cashInTokens(_accounts[account_].cashWad, _collaterals[QUOTE].decimals);
        return _balances[account_][assetId];
    }

    /// @inheritdoc IClearinghouse
    function accountHealth(address account_) external view nonReentrantView returns (Health memory) {
        return _currentHealth(account_);
    }

    /// @inheritdoc IClearinghouse
    function backstopDeficit()
        external
        view
        nonReentrantView
        returns (int256 fundEquityWad, uint256 impliedDeficitWad)
    {
        fundEquityWad = _currentHealth(insuranceFund).equityWad;
        impliedDeficitWad = fundEquityWad < 0 ? uint256(-fundEquityWad) : 0;
    }

    /// @inheritdoc IClearinghouse
    function isLiquidatable(address account_) external view nonReentrantView returns (bool) {
        Health memory h = _currentHealth(account_);
        return h.equityWad < h.maintenanceMarginWad.toInt256();
    }

    // ================================================================ INTERNAL: MARGIN
    /// @dev Health as a liquidation would see it now, from views: broken feeds quoted (I18).
    function _currentHealth(address account_) internal view returns (Health memory) {
        Account memory a = _accounts[account_];
        (Prices memory p,) = _peekPrices(_priceMask(a));
        return _healthAt(account_, a, p);
    }

    /// @dev I5: equity ≥ IM with every price the account needs usable and the sequencer up.
    function _requireInitialMargin(address account_, Account memory a) internal {
        uint256 mask = _priceMask(a);
        Health memory h = _healthAt(account_, a, _readPrices(mask, mask));
        if (h.equityWad < h.initialMarginWad.toInt256()) {
            revert InsufficientMargin(account_, h.equityWad, h.initialMarginWad);
        }
    }

    // ================================================================ INTERNAL: TRADES
    struct SideChange {
        int256 sizeBefore;
        int256 sizeAfter;
        int256 cashChangeWad;
        bool reduces;
        uint64 nonce;
    }

    /// @dev Books one side of a trade: size, cash at the trade price (paid rounded up, received
    /// rounded down), nonce, market mask, open interest, and the caps on risk-increasing changes.
    function _applyTrade(address account_, uint256 marketId, MarketConfig storage m, int256 delta, uint256 priceE18)
        internal
        returns (SideChange memory s)
    {
        s.sizeBefore = _positions[account_][marketId].size;
        s.sizeAfter = s.sizeBefore + delta;
        // Reducing: moves toward zero without crossing it.
        s.reduces = s.sizeBefore != 0 && (s.sizeBefore > 0) != (delta > 0) && delta.abs() <= s.sizeBefore.abs();
        Account memory a = _accounts[account_];
        if (!s.reduces) {
            uint256 absAfter = s.sizeAfter.abs();
            if (absAfter > m.maxPositionSize) revert PositionTooLarge(marketId, absAfter, m.maxPositionSize);
            if (s.sizeBefore == 0) {
                uint256 count = MarginMath.popCount(a.marketMask) + 1;
                if (count > _liquidation.maxPositionsPerAccount) {
                    revert TooManyPositions(account_, count, _liquidation.maxPositionsPerAccount);
                }
            }
        }
        s.cashChangeWad = -delta.mulDivCeil(priceE18, MarginMath.WAD);
        _positions[account_][marketId].size = s.sizeAfter.toInt128();
        a.cashWad = (a.cashWad + s.cashChangeWad).toInt128();
        a.positionNonce += 1;
        if (s.sizeAfter == 0) a.marketMask &= ~uint32(1 << marketId);
        else a.marketMask |= uint32(1 << marketId);
        _accounts[account_] = a;
        s.nonce = a.positionNonce;
        m.openInterestLong = _openInterestAfter(m.openInterestLong, s.sizeBefore, s.sizeAfter);
    }

    /// @dev The oracle price a trade settles against, and whether there is one. Exits stay open with
    /// the oracle down (S4): a trade where both sides only reduce needs no price, but the band is
    /// still enforced when the price is usable. Any other trade needs the price and the sequencer.
    function _checkBand(uint256 marketId, MarketConfig storage m, uint256 priceE18, bool reducesOnly)
        internal
        returns (uint256 oraclePrice, bool priced)
    {
        if (!reducesOnly && paused) revert Paused();
        (oraclePrice, priced) = _readPrice(m.oracleAsset, !reducesOnly);
        if (!priced) return (oraclePrice, priced);
        uint256 band = oraclePrice.mulDivDown(m.priceBandBps, MarginMath.BPS);
        if (priceE18 + band < oraclePrice || priceE18 > oraclePrice + band) {
            revert PriceOutsideBand(marketId, priceE18, oraclePrice, m.priceBandBps);
        }
    }

    /// @dev A risk-increasing side needs initial margin after the trade. A reducing side may not
    /// shrink its margin surplus (equity − IM, at the oracle price): that is exact and local, because
    /// equity and IM are sums of per-market terms and only this market's term and cash changed.
    /// With the oracle down a reducing side goes through unchecked (exits stay open, S4).
    function _checkSide(
        address account_,
        SideChange memory s,
        MarketConfig storage m,
        uint256 priceE18,
        uint256 oraclePrice,
        bool priced
    ) internal {
        if (!s.reduces) {
            _requireInitialMargin(account_, _accounts[account_]);
            return;
        }
        if (!priced) return;
        int256 equityChange = s.cashChangeWad + s.sizeAfter.mulDivFloor(oraclePrice, MarginMath.WAD)
            - s.sizeBefore.mulDivFloor(oraclePrice, MarginMath.WAD);
        uint256 ratePerWad = oraclePrice * m.imBps;
        int256 imReleased = (s.sizeBefore.abs().mulDivUp(ratePerWad, MarginMath.WAD * MarginMath.BPS)
                - s.sizeAfter.abs().mulDivUp(ratePerWad, MarginMath.WAD * MarginMath.BPS))
        .toInt256();
        int256 surplusChange = equityChange + imReleased;
        if (surplusChange < 0) revert ReduceWorsensMargin(account_, surplusChange);
    }

    // ================================================================ INTERNAL: ATTESTATIONS
    function _submitAttestation(IAttestationVerifier.MarginBatch calldata batch, bytes calldata signatures) internal {
        IAttestationVerifier attestor_ = attestor;
        if (address(attestor_) == address(0)) revert AttestationsDisabled();
        attestor_.submit(batch, signatures);
    }

    // ================================================================ INTERNAL: CONFIGURATION
    function _listCollateral(IERC20 token, uint8 oracleAsset, uint16 weightBps, uint128 depositCap)
        internal
        returns (uint256 assetId)
    {
        if (address(token) == address(0)) revert ZeroAddress();
        assetId = collateralCount;
        for (uint256 i; i < assetId; ++i) {
            // Two listings of one token would share its held balance and blind CollateralShortfall.
            if (_collaterals[i].token == token) revert CollateralAlreadyListed(address(token));
        }
        if (assetId != QUOTE) _requireOracleAsset(oracleAsset);
        if (assetId >= MAX_COLLATERALS) revert TooManyCollaterals(assetId + 1, MAX_COLLATERALS);
        uint8 decimals = IERC20Metadata(address(token)).decimals();
        if (decimals > 18) revert UnsupportedDecimals(address(token), decimals);
        _checkCollateralParams(assetId, weightBps, depositCap);
        collateralCount = assetId + 1;
        _collaterals[assetId] = CollateralConfig(token, oracleAsset, weightBps, decimals, true, depositCap, 0);
        emit CollateralListed(assetId, address(token), oracleAsset, decimals);
        emit CollateralConfigured(assetId, weightBps, depositCap);
    }

    function _requireOracleAsset(uint8 oracleAsset) internal view {
        if (address(oracle.feedConfig(oracleAsset).feed) == address(0)) revert OracleAssetNotListed(oracleAsset);
    }

    function _checkCollateralParams(uint256 assetId, uint16 weightBps, uint128 depositCap) internal pure {
        // The quote token is the unit of account: it always counts in full.
        bool badWeight = assetId == QUOTE ? weightBps != MarginMath.BPS : (weightBps == 0 || weightBps > MarginMath.BPS);
        if (badWeight || depositCap == 0) revert InvalidCollateralConfig(weightBps, depositCap);
    }

    function _configureMarket(
        uint256 marketId,
        MarketConfig storage m,
        uint16 imBps,
        uint16 mmBps,
        uint16 liquidationPenaltyBps,
        uint16 priceBandBps,
        uint128 maxPositionSize,
        uint128 openInterestCap
    ) internal {
        // penalty < MM keeps a liquidation from leaving the account less healthy (S5); band < IM
        // keeps a reducing trade inside the band from eating more margin than it releases.
        if (
            liquidationPenaltyBps == 0 || liquidationPenaltyBps >= mmBps || mmBps >= imBps || imBps > MarginMath.BPS
                || priceBandBps == 0 || priceBandBps >= imBps || maxPositionSize == 0 || openInterestCap == 0
        ) revert InvalidMarketConfig(imBps, mmBps, liquidationPenaltyBps, priceBandBps);
        m.imBps = imBps;
        m.mmBps = mmBps;
        _setMarketRisk(marketId, m.oracleAsset, imBps, mmBps);
        m.liquidationPenaltyBps = liquidationPenaltyBps;
        m.priceBandBps = priceBandBps;
        m.maxPositionSize = maxPositionSize;
        m.openInterestCap = openInterestCap;
        emit MarketConfigured(
            marketId, imBps, mmBps, liquidationPenaltyBps, priceBandBps, maxPositionSize, openInterestCap
        );
    }

    // ================================================================ INTERNAL: HELPERS
    /// @dev Runs `module` on this contract's storage with this call's data from `offset` on, and
    /// ends the call with the module's reply or revert.
    function _delegate(address module, uint256 offset) internal {
        assembly ("memory-safe") {
            let size := sub(calldatasize(), offset)
            let ptr := mload(0x40)
            calldatacopy(ptr, offset, size)
            let ok := delegatecall(gas(), module, ptr, size, 0, 0)
            returndatacopy(ptr, 0, returndatasize())
            switch ok
            case 0 { revert(ptr, returndatasize()) }
            default { return(ptr, returndatasize()) }
        }
    }

    /// @dev Runs a module's hook on this contract's storage and returns (reverts bubble up).
    function _callModule(address module, bytes memory data) internal {
        (bool ok, bytes memory reply) = module.delegatecall(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(reply, 0x20), mload(reply))
            }
        }
    }

    function _listedCollateral(uint256 assetId) internal view returns (CollateralConfig storage c) {
        c = _collaterals[assetId];
        if (!c.listed) revert UnknownCollateral(assetId);
    }

    function _cashInTokens(int256 cashWad, uint8 decimals) internal pure returns (uint256) {
        return cashWad > 0 ? uint256(cashWad) / _scale(decimals) : 0;
    }
}
