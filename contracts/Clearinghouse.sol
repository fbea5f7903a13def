// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IClearinghouse} from "./interfaces/IClearinghouse.sol";
import {IAttestationVerifier} from "./interfaces/IAttestationVerifier.sol";
import {IOracleRouter} from "./interfaces/IOracleRouter.sol";
import {MarginMath} from "./libraries/MarginMath.sol";

/// @title Clearinghouse
/// @notice Holds collateral, records perpetual positions and enforces margin (see IClearinghouse).
contract Clearinghouse is IClearinghouse, Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
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

    IOracleRouter public immutable oracle;
    address public immutable insuranceFund;

    bool public paused;
    address public guardian;
    /// @notice Where attested requirements come from; address(0) means static margin only (Gen 2).
    IAttestationVerifier public attestor;
    uint256 public deficitWad;
    uint256 public collateralCount;
    uint256 public marketCount;
    LiquidationConfig internal _liquidation;

    mapping(uint256 assetId => CollateralConfig) internal _collaterals;
    mapping(uint256 marketId => MarketConfig) internal _markets;
    mapping(address matcher => bool) public isMatcher;
    mapping(address account => Account) internal _accounts;
    mapping(address account => mapping(uint256 marketId => int256 size)) internal _positions;
    mapping(address account => mapping(uint256 assetId => uint256 amount)) internal _balances;

    // ================================================================ CONSTRUCTOR
    constructor(
        address owner_,
        IOracleRouter oracle_,
        IERC20 quoteToken,
        uint128 quoteDepositCap,
        address insuranceFund_,
        LiquidationConfig memory liquidation_
    ) Ownable(owner_) {
        if (address(oracle_) == address(0) || insuranceFund_ == address(0)) {
            revert ZeroAddress();
        }
        oracle = oracle_;
        insuranceFund = insuranceFund_;
        _listCollateral(quoteToken, 0, uint16(MarginMath.BPS), quoteDepositCap);
        _configureLiquidation(liquidation_);
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

    /// @inheritdoc IClearinghouse
    function liquidate(address account_, uint256 marketId, uint256 maxCloseSize)
        external
        nonReentrant
        returns (uint256 closedSize, uint256 keeperRewardWad)
    {
        return _liquidate(account_, marketId, maxCloseSize);
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

        uint256 oraclePrice;
        bool priced;
        if (t.reduces && k.reduces) {
            // Exits stay open with the oracle down (S4); the band is still enforced when it is up.
            IOracleRouter.PriceStatus status;
            (oraclePrice, status) = oracle.tryPriceE18(m.oracleAsset);
            priced = status == IOracleRouter.PriceStatus.OK;
        } else {
            if (paused) revert Paused();
            oracle.checkSequencer();
            oraclePrice = oracle.priceE18(m.oracleAsset);
            priced = true;
        }
        if (priced) {
            uint256 band = oraclePrice.mulDivDown(m.priceBandBps, MarginMath.BPS);
            if (priceE18 + band < oraclePrice || priceE18 > oraclePrice + band) {
                revert PriceOutsideBand(marketId, priceE18, oraclePrice, m.priceBandBps);
            }
        }
        _checkSide(taker, t, m, priceE18, oraclePrice, priced);
        _checkSide(maker, k, m, priceE18, oraclePrice, priced);
        emit TradeSettled(marketId, taker, maker, takerSizeDelta, priceE18, t.sizeAfter, k.sizeAfter, t.nonce, k.nonce);
    }

    function _liquidate(address account_, uint256 marketId, uint256 maxCloseSize)
        internal
        returns (uint256 closedSize, uint256 keeperRewardWad)
    {
        if (account_ == msg.sender) revert SelfLiquidation(account_);
        if (account_ == insuranceFund) revert BackstopNotLiquidatable(account_);
        if (maxCloseSize == 0) revert ZeroAmount();
        MarketConfig memory m = _listedMarket(marketId);
        int256 size = _positions[account_][marketId];
        if (size == 0) revert NoPosition(account_, marketId);
        oracle.checkSequencer();

        Account memory a = _accounts[account_];
        uint256[] memory prices = oracle.pricesE18(_priceMask(a));
        Health memory h = _healthAt(account_, a, prices);
        if (h.equityWad >= h.maintenanceMarginWad.toInt256()) {
            revert AccountHealthy(account_, h.equityWad, h.maintenanceMarginWad);
        }
        LiquidationStep memory step;
        step.priceE18 = prices[m.oracleAsset];
        step.sizeBefore = size;
        (step.closeSize,) = _closeSize(size, step.priceE18, h);
        if (step.closeSize > maxCloseSize) {
            // A keeper may close less than allowed, but never leave dust nobody will pay to close.
            step.closeSize = maxCloseSize;
            uint256 remainingWad = (size.abs() - maxCloseSize).mulDivDown(step.priceE18, MarginMath.WAD);
            if (remainingWad < _liquidation.minPositionNotionalWad) {
                revert LiquidationLeavesDust(remainingWad, _liquidation.minPositionNotionalWad);
            }
        }
        bool ok;
        (step.penaltyWad, step.keeperRewardWad, ok) = _penalty(size, step.closeSize, step.priceE18, m);
        if (!ok) revert LiquidationTooSmall(step.closeSize);
        _executeLiquidation(account_, marketId, a, step);

        if (a.marketMask == 0) {
            // Equity after, from the health already computed: the closed size was realised at the
            // oracle price (cash change plus the change in its mark), less the penalty.
            int256 equityAfter = h.equityWad + step.cashChangeWad
                + step.sizeAfter.mulDivFloor(step.priceE18, MarginMath.WAD)
                - size.mulDivFloor(step.priceE18, MarginMath.WAD) - step.penaltyWad.toInt256();
            if (equityAfter < 0) _resolveInsolvency(account_, a, prices);
        }
        return (step.closeSize, step.keeperRewardWad);
    }

    /// @inheritdoc IClearinghouse
    function resolveInsolvency(address account_) external nonReentrant {
        if (account_ == insuranceFund) revert BackstopNotLiquidatable(account_);
        Account memory a = _accounts[account_];
        if (a.marketMask != 0) revert HasOpenPositions(account_, a.marketMask);
        uint256[] memory prices = oracle.pricesE18(_priceMask(a));
        int256 equity = _healthAt(account_, a, prices).equityWad;
        if (equity >= 0) revert NotInsolvent(account_, equity);
        _resolveInsolvency(account_, a, prices);
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

    /// @inheritdoc IClearinghouse
    function configureLiquidation(LiquidationConfig calldata config) external onlyOwner {
        _configureLiquidation(config);
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
        return _positions[account_][marketId];
    }

    /// @inheritdoc IClearinghouse
    /// @dev For the quote token: the non-negative part of the cash balance, in token units, rounded down.
    function collateralBalance(address account_, uint256 assetId) external view returns (uint256) {
        if (assetId == QUOTE) return _cashInTokens(_accounts[account_].cashWad, _collaterals[QUOTE].decimals);
        return _balances[account_][assetId];
    }

    /// @inheritdoc IClearinghouse
    function accountHealth(address account_) external view nonReentrantView returns (Health memory) {
        Account memory a = _accounts[account_];
        return _healthAt(account_, a, oracle.pricesE18(_priceMask(a)));
    }

    /// @inheritdoc IClearinghouse
    function isLiquidatable(address account_) external view nonReentrantView returns (bool) {
        Account memory a = _accounts[account_];
        Health memory h = _healthAt(account_, a, oracle.pricesE18(_priceMask(a)));
        return h.equityWad < h.maintenanceMarginWad.toInt256();
    }

    /// @inheritdoc IClearinghouse
    function previewLiquidation(address account_, uint256 marketId)
        external
        view
        nonReentrantView
        returns (LiquidationPreview memory p)
    {
        MarketConfig memory m = _markets[marketId];
        int256 size = _positions[account_][marketId];
        if (account_ == insuranceFund) p.status = PreviewStatus.BACKSTOP;
        else if (!m.listed) p.status = PreviewStatus.UNKNOWN_MARKET;
        else if (size == 0) p.status = PreviewStatus.NO_POSITION;
        else if (!oracle.sequencerOk()) p.status = PreviewStatus.SEQUENCER_DOWN;
        if (p.status != PreviewStatus.LIQUIDATABLE) return p;

        Account memory a = _accounts[account_];
        (uint256[] memory prices, bool ok) = _tryPrices(_priceMask(a));
        if (!ok) {
            p.status = PreviewStatus.PRICE_UNAVAILABLE;
            return p;
        }
        Health memory h = _healthAt(account_, a, prices);
        p.equityWad = h.equityWad;
        p.maintenanceMarginWad = h.maintenanceMarginWad;
        p.priceE18 = prices[m.oracleAsset];
        if (h.equityWad >= h.maintenanceMarginWad.toInt256()) {
            p.status = PreviewStatus.HEALTHY;
            return p;
        }
        (p.closeSize, p.fullLiquidation) = _closeSize(size, p.priceE18, h);
        (p.penaltyWad, p.keeperRewardWad,) = _penalty(size, p.closeSize, p.priceE18, m);
    }

    // ================================================================ INTERNAL: MARGIN
    /// @dev The one health function. Equity rounds down and requirements round up: every rounding
    /// goes against the account. `prices` is indexed by oracle asset id.
    function _healthAt(address account_, Account memory a, uint256[] memory prices)
        internal
        view
        returns (Health memory h)
    {
        int256 equity = a.cashWad;
        for (uint256 mask = a.collateralMask; mask != 0; mask &= mask - 1) {
            uint256 assetId = MarginMath.lowestBit(mask);
            CollateralConfig storage c = _collaterals[assetId];
            uint256 amountWad = _balances[account_][assetId] * _scale(c.decimals);
            equity += amountWad.mulDivDown(prices[c.oracleAsset] * c.weightBps, MarginMath.WAD * MarginMath.BPS)
                .toInt256();
        }
        uint256 im;
        uint256 mm;
        uint256 marketAssetMask;
        for (uint256 mask = a.marketMask; mask != 0; mask &= mask - 1) {
            uint256 marketId = MarginMath.lowestBit(mask);
            MarketConfig storage m = _markets[marketId];
            int256 size = _positions[account_][marketId];
            uint256 price = prices[m.oracleAsset];
            marketAssetMask |= 1 << m.oracleAsset;
            equity += size.mulDivFloor(price, MarginMath.WAD);
            uint256 absSize = size.abs();
            im += absSize.mulDivUp(price * m.imBps, MarginMath.WAD * MarginMath.BPS);
            mm += absSize.mulDivUp(price * m.mmBps, MarginMath.WAD * MarginMath.BPS);
        }
        h.equityWad = equity;
        // The requirement in force: attested while S1 holds, static otherwise (S2). Equity is
        // always computed here from oracle prices, never taken from an attestation.
        IAttestationVerifier attestor_ = attestor;
        if (address(attestor_) != address(0) && marketAssetMask != 0) {
            (, im, mm) = attestor_.requirementInForce(account_, a.positionNonce, marketAssetMask, prices, im, mm);
        }
        h.initialMarginWad = im;
        h.maintenanceMarginWad = mm;
    }

    function _requireInitialMargin(address account_, Account memory a) internal view {
        oracle.checkSequencer();
        Health memory h = _healthAt(account_, a, oracle.pricesE18(_priceMask(a)));
        if (h.equityWad < h.initialMarginWad.toInt256()) {
            revert InsufficientMargin(account_, h.equityWad, h.initialMarginWad);
        }
    }

    /// @dev Oracle assets an account's health needs, as a bit mask for one batched router call.
    function _priceMask(Account memory a) internal view returns (uint256 assetMask) {
        for (uint256 mask = a.collateralMask; mask != 0; mask &= mask - 1) {
            assetMask |= 1 << _collaterals[MarginMath.lowestBit(mask)].oracleAsset;
        }
        for (uint256 mask = a.marketMask; mask != 0; mask &= mask - 1) {
            assetMask |= 1 << _markets[MarginMath.lowestBit(mask)].oracleAsset;
        }
    }

    function _tryPrices(uint256 assetMask) internal view returns (uint256[] memory prices, bool ok) {
        prices = new uint256[](oracle.MAX_ASSETS());
        for (uint256 asset; assetMask != 0; ++asset) {
            if (assetMask & 1 == 1) {
                IOracleRouter.PriceStatus status;
                (prices[asset], status) = oracle.tryPriceE18(asset);
                if (status != IOracleRouter.PriceStatus.OK) return (prices, false);
            }
            assetMask >>= 1;
        }
        return (prices, true);
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
        s.sizeBefore = _positions[account_][marketId];
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
        _positions[account_][marketId] = s.sizeAfter;
        a.cashWad = (a.cashWad + s.cashChangeWad).toInt128();
        a.positionNonce += 1;
        if (s.sizeAfter == 0) a.marketMask &= ~uint32(1 << marketId);
        else a.marketMask |= uint32(1 << marketId);
        _accounts[account_] = a;
        s.nonce = a.positionNonce;
        m.openInterestLong = _openInterestAfter(m.openInterestLong, s.sizeBefore, s.sizeAfter);
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
    ) internal view {
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

    function _openInterestAfter(uint128 openInterest, int256 sizeBefore, int256 sizeAfter)
        internal
        pure
        returns (uint128)
    {
        uint256 longBefore = sizeBefore > 0 ? uint256(sizeBefore) : 0;
        uint256 longAfter = sizeAfter > 0 ? uint256(sizeAfter) : 0;
        return (uint256(openInterest) + longAfter - longBefore).toUint128();
    }

    function _updateOpenInterest(uint256 marketId, int256 sizeBefore, int256 sizeAfter) internal {
        MarketConfig storage m = _markets[marketId];
        m.openInterestLong = _openInterestAfter(m.openInterestLong, sizeBefore, sizeAfter);
    }

    // ================================================================ INTERNAL: LIQUIDATION
    struct LiquidationStep {
        uint256 priceE18;
        int256 sizeBefore;
        int256 sizeAfter;
        uint256 closeSize;
        int256 cashChangeWad;
        uint256 penaltyWad;
        uint256 keeperRewardWad;
    }

    /// @dev Moves the closed size to the backstop at the oracle price and pays the penalty: the
    /// keeper's share to the keeper's cash (no keeper capital needed), the rest to the insurance fund.
    /// Updates `a` in memory and storage.
    function _executeLiquidation(address account_, uint256 marketId, Account memory a, LiquidationStep memory step)
        internal
    {
        int256 delta = step.sizeBefore > 0 ? -step.closeSize.toInt256() : step.closeSize.toInt256();
        step.sizeAfter = step.sizeBefore + delta;
        step.cashChangeWad = -delta.mulDivCeil(step.priceE18, MarginMath.WAD);
        _positions[account_][marketId] = step.sizeAfter;
        a.cashWad = (a.cashWad + step.cashChangeWad - step.penaltyWad.toInt256()).toInt128();
        a.positionNonce += 1;
        if (step.sizeAfter == 0) a.marketMask &= ~uint32(1 << marketId);
        _accounts[account_] = a;

        uint64 backstopNonce = _moveToBackstop(marketId, -delta, step.priceE18, step.penaltyWad - step.keeperRewardWad);
        _updateOpenInterest(marketId, step.sizeBefore, step.sizeAfter);
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
    /// liquidation never leaves MM − equity larger, not even by a rounding wei (SPEC I8). `ok` is
    /// false when even a zero penalty could not keep that promise (closes of a few wei). The
    /// keeper's share is rounded down and capped.
    function _penalty(int256 size, uint256 closeSize, uint256 priceE18, MarketConfig memory m)
        internal
        view
        returns (uint256 penaltyWad, uint256 keeperRewardWad, bool ok)
    {
        int256 freed = _freedByClose(size, closeSize, priceE18, m.mmBps);
        if (freed < 0) return (0, 0, false);
        penaltyWad = closeSize.mulDivUp(priceE18 * m.liquidationPenaltyBps, MarginMath.WAD * MarginMath.BPS);
        if (penaltyWad > uint256(freed)) penaltyWad = uint256(freed);
        ok = true;
        keeperRewardWad = penaltyWad.mulDivDown(_liquidation.keeperShareBps, MarginMath.BPS);
        if (keeperRewardWad > _liquidation.keeperRewardCapWad) keeperRewardWad = _liquidation.keeperRewardCapWad;
    }

    /// @dev How much closing `closeSize` at the oracle price lowers MM − equity, exactly: maintenance
    /// margin released, plus the cash received, minus the mark given up.
    function _freedByClose(int256 size, uint256 closeSize, uint256 priceE18, uint256 mmBps)
        internal
        pure
        returns (int256)
    {
        int256 delta = size > 0 ? -closeSize.toInt256() : closeSize.toInt256();
        int256 sizeAfter = size + delta;
        uint256 ratePerWad = priceE18 * mmBps;
        uint256 released = size.abs().mulDivUp(ratePerWad, MarginMath.WAD * MarginMath.BPS)
            - sizeAfter.abs().mulDivUp(ratePerWad, MarginMath.WAD * MarginMath.BPS);
        return released.toInt256() - delta.mulDivCeil(priceE18, MarginMath.WAD)
            + sizeAfter.mulDivFloor(priceE18, MarginMath.WAD) - size.mulDivFloor(priceE18, MarginMath.WAD);
    }

    /// @dev The backstop (insurance fund account) takes `delta` at the oracle price and is paid
    /// `insuranceCutWad`. Exempt from position caps: it must always be able to absorb.
    function _moveToBackstop(uint256 marketId, int256 delta, uint256 priceE18, uint256 insuranceCutWad)
        internal
        returns (uint64 nonce)
    {
        Account memory b = _accounts[insuranceFund];
        int256 sizeBefore = _positions[insuranceFund][marketId];
        int256 sizeAfter = sizeBefore + delta;
        _positions[insuranceFund][marketId] = sizeAfter;
        b.cashWad = (b.cashWad - delta.mulDivCeil(priceE18, MarginMath.WAD) + insuranceCutWad.toInt256()).toInt128();
        b.positionNonce += 1;
        if (sizeAfter == 0) b.marketMask &= ~uint32(1 << marketId);
        else b.marketMask |= uint32(1 << marketId);
        _accounts[insuranceFund] = b;
        _updateOpenInterest(marketId, sizeBefore, sizeAfter);
        return b.positionNonce;
    }

    /// @dev S6: the account's collateral and its negative cash (the debt) both move to the insurance
    /// fund, so the books stay whole. The fund covers the debt as far as its equity (cash, positions
    /// and collateral at oracle prices) stays non-negative; the rest is booked as deficit. If a price
    /// the fund needs is unusable, the whole debt is booked as deficit rather than hidden. Accounts
    /// without positions never absorb any of it (D16).
    function _resolveInsolvency(address account_, Account memory a, uint256[] memory prices) internal {
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
                (amount * _scale(c.decimals)).mulDivDown(prices[c.oracleAsset], MarginMath.WAD)
            );
        }
        fund.collateralMask |= a.collateralMask;
        uint256 debt = a.cashWad < 0 ? uint256(-int256(a.cashWad)) : 0;
        fund.cashWad = (fund.cashWad - debt.toInt256()).toInt128();
        Account storage stored = _accounts[account_];
        stored.collateralMask = 0;
        stored.cashWad = 0;

        Account memory f = fund;
        (uint256[] memory fundPrices, bool ok) = _tryPrices(_priceMask(f));
        uint256 deficit = debt;
        if (ok) {
            int256 fundEquity = _healthAt(insuranceFund, f, fundPrices).equityWad;
            uint256 shortfall = fundEquity < 0 ? uint256(-fundEquity) : 0;
            deficit = shortfall < debt ? shortfall : debt;
        }
        deficitWad += deficit;
        emit InsolvencyResolved(account_, debt, debt - deficit, deficit);
    }

    function _submitAttestation(IAttestationVerifier.MarginBatch calldata batch, bytes calldata signatures) internal {
        IAttestationVerifier attestor_ = attestor;
        if (address(attestor_) == address(0)) revert AttestationsDisabled();
        attestor_.submit(batch, signatures);
    }

    function _creditCash(address account_, uint256 amountWad) internal {
        Account storage a = _accounts[account_];
        a.cashWad = (a.cashWad + amountWad.toInt256()).toInt128();
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
        m.liquidationPenaltyBps = liquidationPenaltyBps;
        m.priceBandBps = priceBandBps;
        m.maxPositionSize = maxPositionSize;
        m.openInterestCap = openInterestCap;
        emit MarketConfigured(
            marketId, imBps, mmBps, liquidationPenaltyBps, priceBandBps, maxPositionSize, openInterestCap
        );
    }

    function _configureLiquidation(LiquidationConfig memory c) internal {
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

    // ================================================================ INTERNAL: HELPERS
    function _listedCollateral(uint256 assetId) internal view returns (CollateralConfig storage c) {
        c = _collaterals[assetId];
        if (!c.listed) revert UnknownCollateral(assetId);
    }

    function _listedMarket(uint256 marketId) internal view returns (MarketConfig storage m) {
        m = _markets[marketId];
        if (!m.listed) revert UnknownMarket(marketId);
    }

    /// @dev Multiplier from token units to 18 decimals.
    function _scale(uint8 decimals) internal pure returns (uint256) {
        return 10 ** (18 - uint256(decimals));
    }

    function _cashInTokens(int256 cashWad, uint8 decimals) internal pure returns (uint256) {
        return cashWad > 0 ? uint256(cashWad) / _scale(decimals) : 0;
    }
}
