// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IAttestationVerifier} from "./IAttestationVerifier.sol";
import {IMarginProofs} from "./IMarginProofs.sol";
import {IOracleRouter} from "./IOracleRouter.sol";

/// @title IClearinghouseBase
/// @notice The types, shared errors and shared state of the clearinghouse and its modules (see
/// IClearinghouse).
interface IClearinghouseBase {
    // ================================================================ TYPES
    /// @notice A listed collateral asset. Asset 0 is the quote (settlement) token, held as `cashWad`.
    /// @param oracleAsset The oracle router asset id that prices it (unused for the quote token).
    /// @param weightBps The haircut as the share of value that counts toward equity (10_000 = all).
    struct CollateralConfig {
        IERC20 token;
        uint8 oracleAsset;
        uint16 weightBps;
        uint8 decimals;
        bool listed;
        uint128 depositCap;
        uint128 totalDeposited;
    }

    /// @notice A perpetual market on one underlying, with static margin rates.
    /// @param priceBandBps A settled trade's price must lie within this distance of the oracle price.
    /// @param maxPositionSize Largest |size| one account may hold (the backstop is exempt).
    struct MarketConfig {
        uint8 oracleAsset;
        uint16 imBps;
        uint16 mmBps;
        uint16 liquidationPenaltyBps;
        uint16 priceBandBps;
        bool listed;
        uint128 maxPositionSize;
        uint128 openInterestCap;
        uint128 openInterestLong;
    }

    /// @notice Liquidation parameters shared by all markets.
    /// @param closeFactorBps Share of a position one partial liquidation may close.
    /// @param fullLiquidationHealthBps Below equity < MM × this / 10_000 a position closes in full.
    /// @param keeperShareBps Share of the penalty paid to the keeper, capped at `keeperRewardCapWad`
    /// per call, and not paid after a chunked liquidation of the account in the same block (I30). The
    /// penalty itself never exceeds the account's equity (I24), so the reward is paid from the
    /// account, never from the insurance fund.
    /// @param minPositionNotionalWad Positions (or remainders) smaller than this close in full (dust).
    struct LiquidationConfig {
        uint16 closeFactorBps;
        uint16 fullLiquidationHealthBps;
        uint16 keeperShareBps;
        uint8 maxPositionsPerAccount;
        uint96 minPositionNotionalWad;
        uint96 keeperRewardCapWad;
    }

    /// @notice Per-account header: one storage slot.
    /// @param positionNonce Bumped on every position change; attestations bind to it.
    /// @param marketMask Bit i set ⇔ a non-zero position in market i.
    /// @param collateralMask Bit i set ⇔ a non-zero balance of non-quote collateral i.
    /// @param chunkBlockTag The block of the account's last chunked liquidation (one whose
    /// `maxCloseSize` closed less than allowed), as `block.number % 65535 + 1` (0: never) (I30).
    struct Account {
        int128 cashWad;
        uint64 positionNonce;
        uint32 marketMask;
        uint16 collateralMask;
        uint16 chunkBlockTag;
    }

    /// @notice The health of an account at current oracle prices.
    struct Health {
        int256 equityWad;
        uint256 initialMarginWad;
        uint256 maintenanceMarginWad;
    }

    /// @notice What a liquidation of `account` in one market would do now; never reverts.
    /// @param status 0 ok; otherwise why it cannot be previewed or executed (see `PreviewStatus`).
    struct LiquidationPreview {
        PreviewStatus status;
        bool fullLiquidation;
        uint256 closeSize;
        uint256 priceE18;
        uint256 penaltyWad;
        uint256 keeperRewardWad;
        int256 equityWad;
        uint256 maintenanceMarginWad;
    }

    enum PreviewStatus {
        LIQUIDATABLE,
        HEALTHY,
        NO_POSITION,
        UNKNOWN_MARKET,
        PRICE_UNAVAILABLE,
        SEQUENCER_DOWN,
        BACKSTOP
    }

    // ================================================================ ERRORS
    error ZeroAmount();
    error ZeroAddress();
    error UnknownMarket(uint256 marketId);

    // ================================================================ VIEWS
    function oracle() external view returns (IOracleRouter);

    function attestor() external view returns (IAttestationVerifier);

    /// @notice The proof registry that gates liquidations on attested requirements (P2, SPEC I34);
    /// address(0): no gate.
    function marginProofs() external view returns (IMarginProofs);

    function insuranceFund() external view returns (address);

    function paused() external view returns (bool);

    function deficitWad() external view returns (uint256);

    function collateralCount() external view returns (uint256);

    function marketCount() external view returns (uint256);

    function isMatcher(address matcher) external view returns (bool);
}

/// @title ILiquidation
/// @notice Liquidation, insolvency resolution and their preview: the clearinghouse's liquidation
/// module, reached through the clearinghouse's address. Keepers are untrusted and permissionless.
///
/// Liveness with a broken feed (SPEC I18, THREATS F03): an account is liquidatable in a market
/// whose own price is usable whenever its equity is below maintenance margin with every broken
/// asset valued at its quote against the account (see IClearinghouse, "Prices"), so a position in
/// a market whose feed is down never shields the account's other markets. A market whose own
/// price is unusable is not liquidated (there is no price to close at); once its feed recovers the
/// usual rule applies. Insolvency resolution values the account and the insurance fund the same
/// way, so a fund holding collateral priced by a broken feed never stalls it.
interface ILiquidation is IClearinghouseBase {
    // ================================================================ ERRORS
    error InvalidLiquidationConfig(
        uint256 closeFactorBps, uint256 fullLiquidationHealthBps, uint256 keeperShareBps, uint256 maxPositionsPerAccount
    );
    error AccountHealthy(address account, int256 equityWad, uint256 maintenanceMarginWad);
    error LiquidationLeavesDust(uint256 remainingNotionalWad, uint256 minPositionNotionalWad);
    error LiquidationTooSmall(uint256 closeSize);
    error NoPosition(address account, uint256 marketId);
    error SelfLiquidation(address account);
    error BackstopNotLiquidatable(address account);
    error NotInsolvent(address account, int256 equityWad);
    error HasOpenPositions(address account, uint256 marketMask);
    error NoUnbookedDeficit(int256 fundEquityWad, uint256 deficitWad);

    // ================================================================ EVENTS
    /// @notice The proof registry that gates liquidations on attested requirements (SPEC I34).
    event MarginProofsSet(address indexed marginProofs);

    /// @notice The liquidation parameters in force from now on (SPEC I9, I24, I30).
    event LiquidationConfigured(
        uint256 closeFactorBps,
        uint256 fullLiquidationHealthBps,
        uint256 keeperShareBps,
        uint256 maxPositionsPerAccount,
        uint256 minPositionNotionalWad,
        uint256 keeperRewardCapWad
    );

    /// @notice `account`'s position moves by `sizeDelta` to the backstop (which moves by −sizeDelta),
    /// at the oracle `priceE18`; the account pays `penaltyWad`, of which `keeperRewardWad` goes to
    /// the keeper's cash and the rest to the insurance fund's cash. `keeperRewardWad` is 0 when a
    /// chunked liquidation of the account came first in this block (I30).
    event Liquidate(
        address indexed account,
        uint256 indexed marketId,
        address indexed keeper,
        int256 sizeDelta,
        uint256 priceE18,
        uint256 penaltyWad,
        uint256 keeperRewardWad,
        int256 sizeAfter,
        uint64 accountNonce,
        uint64 backstopNonce
    );

    /// @notice A non-quote collateral balance moved to the insurance fund when `account` went insolvent.
    event CollateralSeized(address indexed account, uint256 indexed assetId, uint256 amount, uint256 valueWad);

    /// @notice An insolvent account's negative cash `debtWad` moved to the insurance fund: the fund's
    /// equity covered `coveredWad`, and `deficitWad` (what would take the fund's equity below zero)
    /// was booked as protocol deficit (S6).
    event InsolvencyResolved(address indexed account, uint256 debtWad, uint256 coveredWad, uint256 deficitWad);

    /// @notice The insurance fund's equity at oracle prices fell to `fundEquityWad` < −(the booked
    /// deficit): `addedWad` more is booked, making the protocol's deficit `deficitWad` (S6, I25).
    event DeficitBooked(uint256 addedWad, uint256 deficitWad, int256 fundEquityWad);

    // ================================================================ ACTIONS
    /// @notice Liquidates up to `maxCloseSize` of `account`'s position in `marketId` when its equity
    /// is below maintenance margin (S5, I7, I18). Permissionless; the caller needs no capital and
    /// receives a bounded reward in cash (I9), a share of a penalty the account pays from its own
    /// equity (I24): no penalty when the account has none left. A call closing less than allowed
    /// (`maxCloseSize` binds) is a chunk: after it, no liquidation of the account is rewarded in
    /// that block, and their whole penalty goes to the insurance fund (I30), so a close chunked
    /// into several calls in one block pays no more than one call. Closes a close-factor share, or
    /// everything when the position is dust or the account is deeply under water (I10). Books bad
    /// debt when nothing is left (S6, I11). Needs the sequencer up and the market's own price usable (reverts with the
    /// router's reason otherwise); other broken feeds are quoted (I18).
    function liquidate(address account, uint256 marketId, uint256 maxCloseSize)
        external
        returns (uint256 closedSize, uint256 keeperRewardWad);

    /// @notice Resolves an account with no positions and negative equity: its collateral and its
    /// negative cash move to the insurance fund; what the fund's equity cannot cover is booked as
    /// deficit (I11). Permissionless. Never blocked by a broken feed: both are valued at quotes (I18).
    function resolveInsolvency(address account) external;

    /// @notice Books what the insurance fund has lost on what it holds: raises `deficitWad` to the
    /// fund's negative equity at oracle prices (valued as a liquidation values accounts, I18), so a
    /// loss the fund carries is never hidden (S6, I25). Permissionless. Reverts with
    /// `NoUnbookedDeficit` when the fund's equity is ≥ −deficitWad. The deficit never decreases.
    function bookDeficit() external returns (uint256 addedWad);

    /// @notice Owner only (`OwnableUnauthorizedAccount` otherwise). Turns on proof-gated
    /// liquidation (P2, SPEC I34): from then on an attested MM above the static MM counts only up
    /// to the MM that `marginProofs` holds proven for the account's current position nonce and
    /// prices, so no key quorum can liquidate an account the static rules and the published model
    /// both find healthy. An attested IM still applies in full: it can only block new risk, never
    /// take an account's funds. address(0) turns the gate off.
    function setMarginProofs(IMarginProofs marginProofs) external;

    /// @notice Owner only. Sets the close factor, the full-liquidation health, the keeper's share,
    /// the positions an account may hold, the dust floor and the reward cap; reverts
    /// `InvalidLiquidationConfig` with the values when a share exceeds 100%, the close factor is 0,
    /// or the position count is 0 or above the market count limit.
    function configureLiquidation(LiquidationConfig calldata config) external;

    // ================================================================ VIEWS
    /// @notice What `liquidate(account, marketId, type(uint256).max)` would do now. Never reverts
    /// (whatever any feed replies), except with `ReentrancyGuardReentrantCall` mid-transaction (A02).
    function previewLiquidation(address account, uint256 marketId) external view returns (LiquidationPreview memory);
}

/// @title IFunding
/// @notice Perpetual funding: the clearinghouse's funding module, reached through the
/// clearinghouse's address (SPEC I26–I29).
///
/// Formula. Every market keeps a premium sample: each trade settled while the oracle is usable
/// sets `lastPremiumE18 = (tradePrice − oracle) / oracle`, and that premium is held until the
/// next trade. A time-weighted average folds the held premium in at every accrual:
/// `premiumEma += (lastPremium − premiumEma) · min(Δt, premiumWindowS) / premiumWindowS`, so a
/// premium counts in proportion to how long it stood, and one wash trade at the band edge that
/// the next trade replaces moves the average by a sliver (THREATS I04). The rate in force is the
/// average clamped to ±`maxRateBps` per `FUNDING_INTERVAL` (8 h). The cumulative index (USD per
/// whole unit of base, 1e18-scaled; it rises when longs pay) grows lazily, O(1) per touch:
/// `index += price · rate · Δt / (8 h · 1e18)`, with the rate set at the previous accrual and the
/// market's oracle price of the accrual (for a broken feed the router's low quote, as liquidation
/// values it). A position of signed size `s` whose last index is `i0` owes
/// `⌈s · (index − i0) / 1e18⌉` (positive: it pays; negative: it receives, rounded down): it counts
/// in equity in the one health function before it settles, and settles into cash on every
/// position change of the account in that market (trade, liquidation first), and on
/// `settleFunding`. Defaults at listing: 2% per 8 h (Paradex BTC/ETH, Hyperliquid's 4%/h is
/// looser) and a one-hour window (dYdX v4's hourly mean).
///
/// Trust assumptions: matchers settle real trades (a matcher's wash trades at the band edge move
/// the premium only while they stand, and the rate never beyond its cap); the owner sets the cap
/// and window within hard bounds (`maxRateBps` ≤ 1,000, window 60 s–1 day). The oracle price that
/// scales the index is the one health already trusts.
interface IFunding is IClearinghouseBase {
    // ================================================================ TYPES
    /// @notice One market's funding state: two storage slots, rebuilt off-chain from the events.
    /// @param indexWad Cumulative funding per 1e18 of base (USD wad) at `lastAccrual`; longs pay
    /// as it rises, shorts receive.
    /// @param rateE18 Clamped rate per 8 h (1e18 = 100%) in force since `lastAccrual`.
    /// @param premiumEmaE18 Time-weighted average of the held trade premium, at `lastAccrual`.
    /// @param lastPremiumE18 Premium of the last trade settled with a usable oracle price.
    struct FundingMarket {
        int128 indexWad;
        int64 rateE18;
        uint40 lastAccrual;
        int64 premiumEmaE18;
        int64 lastPremiumE18;
        uint16 maxRateBps;
        uint32 premiumWindowS;
    }

    // ================================================================ ERRORS
    error InvalidFundingConfig(uint256 maxRateBps, uint256 premiumWindowS);
    error NothingToSettle(address account, uint256 marketId);

    // ================================================================ EVENTS
    /// @notice The market's index accrued to `indexWad` at `accruedAt` (this block's timestamp);
    /// `rateE18` is in force from then on, from the average premium `premiumEmaE18`.
    event FundingAccrued(
        uint256 indexed marketId, int256 indexWad, int256 rateE18, int256 premiumEmaE18, uint256 accruedAt
    );

    /// @notice A trade with a usable oracle price set the held premium.
    event PremiumSampled(uint256 indexed marketId, int256 premiumE18);

    /// @notice `account` settled its funding in `marketId` up to the market's index as it stands
    /// (every settlement follows an accrual in the same transaction, so the index is the last
    /// `FundingAccrued`'s: not repeated here, which keeps funding's marginal cost per settling side
    /// to this one small log): its cash fell by `amountWad` (negative: it received). These events
    /// are the funding ledger: Σ amountWad over a market is what payers paid less what receivers
    /// received, which once every position has settled to one index is the protocol's rounding
    /// dust, ≥ 0 (I26).
    event FundingSettled(address indexed account, uint256 marketId, int256 amountWad);

    event FundingConfigured(uint256 indexed marketId, uint256 maxRateBps, uint256 premiumWindowS);

    // ================================================================ ACTIONS
    /// @notice Accrues `marketId` and settles `account`'s funding there into its cash (I26).
    /// Permissionless: it moves nothing but what the account already owes or is owed, which
    /// health counts anyway. Needs no usable price (a broken feed is quoted, I18). Reverts
    /// `NothingToSettle` when the account has no position in the market.
    function settleFunding(address account, uint256 marketId) external returns (int256 amountWad);

    /// @notice Owner only. Accrues the index at the old rate first, so funding already accrued is
    /// never repriced (I27); the new cap applies from now on. Reverts `InvalidFundingConfig`
    /// unless `maxRateBps` ≤ 1,000 and 60 ≤ `premiumWindowS` ≤ 86,400.
    function configureFunding(uint256 marketId, uint16 maxRateBps, uint32 premiumWindowS) external;
}

/// @title IClearinghouse
/// @notice Multi-asset collateral, perpetual positions and liquidations, all priced from one
/// oracle router. Units: `...Wad` amounts are USD with 18 decimals; `...E18` prices are USD per whole
/// unit, 18 decimals; sizes are base units with 18 decimals (signed: long > 0); `...Bps` are 1e-4;
/// token `amount`s are in the token's own decimals.
///
/// Accounting model: every account has one signed `cashWad` (its quote balance: quote deposits,
/// trade cash flows at the trade price, penalties and rewards, settled funding). A position is its
/// signed size and the funding index it last settled at, so equity = Σ collateral × price × weight
/// + cashWad + Σ (size × oraclePrice − funding owed) (IFunding). Realised PnL is
/// therefore settled into the quote balance on every trade, and unrealised PnL is the mark of the
/// open size. Every sum rounds against the account (values down, requirements up).
///
/// Prices (SPEC I14, I18). Actions that add risk (a risk-increasing trade side, a withdrawal that
/// needs margin) need every price they read to be usable and revert with the router's reason
/// otherwise. Liquidation-side actions and views value an asset whose feed is broken at the
/// router's `Quote` for it: what the account holds (collateral, longs) at `lowE18`, what it owes
/// (shorts) and its requirements at `highE18`, an interval that widens with the outage. With every
/// feed usable the two are the oracle price and nothing changes. An attested requirement is in
/// force only while every price of the account's markets is usable (else static, S2).
///
/// Layout. One contract address with one storage: the clearinghouse (accounts, trades,
/// administration, views) and its modules, reached by `delegatecall` over the same storage
/// (`ILiquidation`: liquidation, insolvency and their preview). The one health function
/// (`ClearinghouseBase._healthAt`) is shared by every path and view of all of them.
///
/// Trust assumptions: the owner lists sound tokens (no rebasing; fee-on-transfer is credited by
/// balance delta), honest feeds and bounded parameters; matchers (venues) are trusted to settle only
/// trades both traders agreed to, at a price inside the oracle band, and while the oracle is down
/// to settle risk-reducing trades at fair prices; the guardian may pause risk-increasing actions
/// only; the quote token is worth exactly 1 USD. Nobody, owner included, can move an account's
/// collateral except the account itself (withdraw) and liquidation or insolvency resolution.
interface IClearinghouse is ILiquidation, IFunding {
    // ================================================================ ERRORS
    error NotMatcher(address caller);
    error NotGuardian(address caller);
    error Paused();
    error UnknownCollateral(uint256 assetId);
    error TooManyCollaterals(uint256 count, uint256 max);
    error TooManyMarkets(uint256 count, uint256 max);
    error UnsupportedDecimals(address token, uint8 decimals);
    error InvalidCollateralConfig(uint256 weightBps, uint256 depositCap);
    error InvalidMarketConfig(uint256 imBps, uint256 mmBps, uint256 liquidationPenaltyBps, uint256 priceBandBps);
    error DepositCapExceeded(uint256 assetId, uint256 totalAfter, uint256 cap);
    error InsufficientBalance(uint256 assetId, uint256 balance, uint256 amount);
    error CollateralShortfall(uint256 assetId, uint256 heldBalance, uint256 trackedBalance);
    error InsufficientMargin(address account, int256 equityWad, uint256 initialMarginWad);
    error SelfTrade(address account);
    error PriceOutsideBand(uint256 marketId, uint256 tradePriceE18, uint256 oraclePriceE18, uint256 priceBandBps);
    error PositionTooLarge(uint256 marketId, uint256 size, uint256 maxPositionSize);
    error OpenInterestCapExceeded(uint256 marketId, uint256 openInterest, uint256 cap);
    error TooManyPositions(address account, uint256 count, uint256 max);
    error ReduceWorsensMargin(address account, int256 surplusChangeWad);
    error AttestationsDisabled();
    error OracleAssetNotListed(uint256 oracleAsset);
    error CollateralAlreadyListed(address token);
    error ModuleMismatch(address module);
    error OnlySelf(address caller);

    // ================================================================ EVENTS
    event CollateralListed(uint256 indexed assetId, address indexed token, uint256 oracleAsset, uint8 decimals);
    event CollateralConfigured(uint256 indexed assetId, uint256 weightBps, uint256 depositCap);
    event MarketListed(uint256 indexed marketId, uint256 oracleAsset);
    event MarketConfigured(
        uint256 indexed marketId,
        uint256 imBps,
        uint256 mmBps,
        uint256 liquidationPenaltyBps,
        uint256 priceBandBps,
        uint256 maxPositionSize,
        uint256 openInterestCap
    );
    event MatcherSet(address indexed matcher, bool allowed);
    event GuardianSet(address indexed guardian);
    event AttestorSet(address indexed attestor);
    event PauseSet(bool paused);

    /// @notice `credited` is what actually arrived (balance delta), which is what the account gets.
    event Deposit(
        address indexed account, uint256 indexed assetId, address indexed from, uint256 amount, uint256 credited
    );
    event Withdraw(address indexed account, uint256 indexed assetId, address indexed to, uint256 amount);

    /// @notice The taker's size changes by `takerSizeDelta` and the maker's by its negation, both at
    /// `priceE18`; cash moves by −ceil(delta × price) for each side. Sizes after and nonces are given
    /// so a keeper can rebuild the book from events alone.
    event TradeSettled(
        uint256 indexed marketId,
        address indexed taker,
        address indexed maker,
        int256 takerSizeDelta,
        uint256 priceE18,
        int256 takerSizeAfter,
        int256 makerSizeAfter,
        uint64 takerNonce,
        uint64 makerNonce
    );

    // ================================================================ ACCOUNT ACTIONS
    /// @notice Deposits `amount` of collateral `assetId` for `account`. Always open (S4), even while
    /// paused or with stale prices. Credits the balance actually received.
    function deposit(address account, uint256 assetId, uint256 amount) external returns (uint256 credited);

    /// @notice Withdraws to `to`. Must leave equity ≥ initial margin (S4); an account with no
    /// positions and non-negative cash withdraws without any price read.
    function withdraw(uint256 assetId, uint256 amount, address to) external;

    /// @notice `withdraw` with a signed attestation applied first, in the same transaction (S3), so
    /// the margin check sees the engine's requirement for this account's current position nonce.
    function withdrawWithAttestation(
        uint256 assetId,
        uint256 amount,
        address to,
        IAttestationVerifier.MarginBatch calldata batch,
        bytes calldata signatures
    ) external;

    /// @notice `settleTrade` with attestations applied first (S3). Entries must be bound to the
    /// position nonces the accounts will have after this trade (current nonce + 1).
    function settleTradeWithAttestation(
        uint256 marketId,
        address taker,
        address maker,
        int256 takerSizeDelta,
        uint256 priceE18,
        IAttestationVerifier.MarginBatch calldata batch,
        bytes calldata signatures
    ) external;

    /// @notice Settles a trade agreed on a venue: `taker` changes by `takerSizeDelta`, `maker` by its
    /// negation, both at `priceE18`. Matchers only. A side that increases its exposure must meet
    /// initial margin after the trade (and the protocol must not be paused); a side that only
    /// reduces may not lower its margin surplus, and goes through even with the oracle down (S4).
    function settleTrade(uint256 marketId, address taker, address maker, int256 takerSizeDelta, uint256 priceE18)
        external;

    // ================================================================ ADMIN
    function listCollateral(IERC20 token, uint8 oracleAsset, uint16 weightBps, uint128 depositCap)
        external
        returns (uint256 assetId);

    function configureCollateral(uint256 assetId, uint16 weightBps, uint128 depositCap) external;

    function listMarket(
        uint8 oracleAsset,
        uint16 imBps,
        uint16 mmBps,
        uint16 liquidationPenaltyBps,
        uint16 priceBandBps,
        uint128 maxPositionSize,
        uint128 openInterestCap
    ) external returns (uint256 marketId);

    function configureMarket(
        uint256 marketId,
        uint16 imBps,
        uint16 mmBps,
        uint16 liquidationPenaltyBps,
        uint16 priceBandBps,
        uint128 maxPositionSize,
        uint128 openInterestCap
    ) external;

    function setMatcher(address matcher, bool allowed) external;

    /// @notice Owner only. address(0) switches attested margin off (static margin only).
    function setAttestor(IAttestationVerifier attestor) external;

    function setGuardian(address guardian) external;

    /// @notice Guardian (or owner): stops risk-increasing trades. Exits stay open (S4).
    function pause() external;

    /// @notice Owner only.
    function unpause() external;

    // ================================================================ VIEWS
    /// @notice The module every `ILiquidation` function is delegated to.
    function liquidationModule() external view returns (ILiquidation);

    /// @notice The module `settleFunding` and `configureFunding` (IFunding) are delegated to.
    function fundingModule() external view returns (IFunding);

    /// @notice The funding index `account`'s position in `marketId` last settled at (IFunding).
    /// A market's index, rate and premium are in its `FundingAccrued` events.
    function fundingIndexOf(address account, uint256 marketId) external view returns (int256 indexWad);

    function collateral(uint256 assetId) external view returns (CollateralConfig memory);

    function market(uint256 marketId) external view returns (MarketConfig memory);

    function liquidationConfig() external view returns (LiquidationConfig memory);

    function account(address account) external view returns (Account memory);

    function position(address account, uint256 marketId) external view returns (int256 size);

    function collateralBalance(address account, uint256 assetId) external view returns (uint256 amount);

    /// @notice The one health function: equity, and the initial and maintenance margin in force
    /// (attested while S1 holds, else static), at current oracle prices, broken feeds quoted as a
    /// liquidation would (I18). Never reverts on any feed fault; reverts with
    /// `ReentrancyGuardReentrantCall` when called in the middle of a state change (THREATS A02).
    function accountHealth(address account) external view returns (Health memory);

    /// @notice The insurance fund's equity at current oracle prices (as `accountHealth`) and the
    /// deficit it implies, max(0, −equity). Above `deficitWad`, the gap is a loss `bookDeficit`
    /// would book now (I25). Never reverts on any feed fault.
    function backstopDeficit() external view returns (int256 fundEquityWad, uint256 impliedDeficitWad);

    /// @notice Liquidatable ⇔ equity < maintenance margin in force (as `accountHealth`, total).
    function isLiquidatable(address account) external view returns (bool);
}
