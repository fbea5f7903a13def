// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IAttestationVerifier} from "./interfaces/IAttestationVerifier.sol";
import {IClearinghouse} from "./interfaces/IClearinghouse.sol";
import {ICommitteeRegistry} from "./interfaces/ICommitteeRegistry.sol";
import {IVenueLink} from "./interfaces/IVenueLink.sol";
import {MarginMath} from "./libraries/MarginMath.sol";

/// @title VenueLink
/// @notice One venue's end of a cross-venue link: committee certificates, pledges and orders, and
/// the requirement in force the clearinghouse reads (see IVenueLink).
contract VenueLink is IVenueLink, Ownable2Step {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    // ================================================================ CONSTANTS
    /// @notice Domain tags: a link id, a certificate and an order can never be taken for another.
    bytes32 public constant LINK_TAG = keccak256("marginsync.link.v1");
    bytes32 public constant CERTIFICATE_TAG = keccak256("marginsync.certificate.v1");
    bytes32 public constant ORDER_TAG = keccak256("marginsync.order.v1");
    /// @notice The most venues a link may join (a pledge's target fits in its slot).
    uint256 public constant MAX_VENUES = 32;

    uint8 internal constant RELEASE = 1;
    uint8 internal constant CLAIM = 2;
    uint8 internal constant MOVE = 3;

    // ================================================================ STORAGE
    IClearinghouse public immutable clearinghouse;
    IERC20 public immutable quoteToken;

    /// @inheritdoc IVenueLink
    bytes32 public linkId;
    // The registry and both parameters share one slot: the in-force check reads them together.
    /// @inheritdoc IVenueLink
    ICommitteeRegistry public registry;
    /// @inheritdoc IVenueLink
    uint32 public maxAgeSeconds = 30;
    /// @inheritdoc IVenueLink
    uint16 public priceBandBps = 100;
    uint32 internal _selfIndex;
    /// @inheritdoc IVenueLink
    IAttestationVerifier public inner;
    Venue[] internal _venues;

    mapping(address account => AppliedCertificate) internal _applied;
    /// @inheritdoc IVenueLink
    mapping(address account => uint64) public pledgeNonce;
    /// @inheritdoc IVenueLink
    mapping(address account => uint256) public rebalanceAllowance;
    mapping(uint256 pledgeId => Pledge) internal _pledges;
    /// @inheritdoc IVenueLink
    uint256 public pledgeCount;
    /// @inheritdoc IVenueLink
    mapping(bytes32 claimId => bool) public paidClaims;
    /// @inheritdoc IVenueLink
    mapping(bytes32 digest => bool) public executedOrders;

    // ================================================================ CONSTRUCTOR
    constructor(IClearinghouse clearinghouse_, IERC20 quoteToken_, address owner_) Ownable(owner_) {
        if (address(clearinghouse_) == address(0) || address(quoteToken_) == address(0)) revert ZeroAddress();
        clearinghouse = clearinghouse_;
        quoteToken = quoteToken_;
        emit ParamsSet(maxAgeSeconds, priceBandBps);
    }

    modifier configured() {
        if (linkId == bytes32(0)) revert NotConfigured();
        _;
    }

    // ================================================================ CERTIFICATES
    /// @inheritdoc IVenueLink
    function submitCertificate(Certificate calldata c, uint256 signerBitmap, bytes calldata signature)
        external
        configured
    {
        if (c.linkId != linkId) revert WrongLink(linkId, c.linkId);
        uint256 count = _venues.length;
        if (c.venues.length != count) revert VenueCountMismatch(c.venues.length, count);
        for (uint256 j; j < count; ++j) {
            VenueView calldata v = c.venues[j];
            Venue storage known = _venues[j];
            if (v.chainId != known.chainId || v.link != known.link) revert VenueMismatch(j, v.chainId, v.link);
        }
        _checkAge(c.issuedAt, true);
        address account = c.account;
        AppliedCertificate storage stored = _applied[account];
        if (c.sequence <= stored.sequence) revert CertificateReplayed(account, c.sequence, stored.sequence);
        VenueView calldata own = c.venues[_selfIndex];
        uint64 positionNonce = clearinghouse.account(account).positionNonce;
        if (own.positionNonce != positionNonce) revert StalePositionNonce(account, own.positionNonce, positionNonce);
        if (own.pledgeNonce != pledgeNonce[account]) {
            revert StalePledgeNonce(account, own.pledgeNonce, pledgeNonce[account]);
        }
        uint256 assets = MarginMath.popCount(own.priceAssetMask);
        if (own.pricesE18.length != assets) revert PriceCountMismatch(own.pricesE18.length, assets);
        bytes32 digest = _certificateDigest(c);
        uint32 epoch = registry.verify(digest, signerBitmap, signature);

        stored.sequence = c.sequence;
        stored.issuedAt = c.issuedAt;
        stored.positionNonce = own.positionNonce;
        stored.pledgeNonce = own.pledgeNonce;
        stored.keyEpoch = epoch;
        stored.imWad = own.imWad.toUint112();
        stored.mmWad = own.mmWad.toUint112();
        stored.pledgedWad = own.pledgedWad.toUint128();
        stored.priceAssetMask = own.priceAssetMask.toUint32();
        uint128[] storage prices = stored.pricesE18;
        while (prices.length > assets) {
            prices.pop();
        }
        for (uint256 k; k < assets; ++k) {
            uint128 price = own.pricesE18[k].toUint128();
            if (k < prices.length) prices[k] = price;
            else prices.push(price);
        }
        emit CertificateApplied(account, digest, stored);
    }

    // ================================================================ PLEDGES
    /// @inheritdoc IVenueLink
    function pledge(uint256 toVenue, uint256 amount) external configured returns (uint256 pledgeId) {
        _checkTarget(toVenue);
        if (amount == 0) revert ZeroAmount();
        pledgeId = ++pledgeCount;
        _pledges[pledgeId] = Pledge(msg.sender, uint32(toVenue), PledgeState.ACTIVE, amount);
        _changed(pledgeId, _pledges[pledgeId]);
        quoteToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IVenueLink
    function requestRelease(uint256 pledgeId) external {
        Pledge storage p = _pledge(pledgeId);
        if (p.account != msg.sender) revert NotPledgeOwner(pledgeId, msg.sender, p.account);
        if (p.state != PledgeState.ACTIVE) revert PledgeNotActive(pledgeId, p.state);
        p.state = PledgeState.RELEASING;
        _changed(pledgeId, p);
    }

    /// @inheritdoc IVenueLink
    function setRebalanceCap(uint256 capAmount) external {
        rebalanceAllowance[msg.sender] = capAmount;
        emit RebalanceAllowanceSet(msg.sender, capAmount);
    }

    /// @inheritdoc IVenueLink
    function executeOrder(Order calldata o, uint256 signerBitmap, bytes calldata signature) external configured {
        if (o.linkId != linkId) revert WrongLink(linkId, o.linkId);
        if (o.chainId != block.chainid || o.link != address(this)) revert OrderNotForThisVenue(o.chainId, o.link);
        _checkAge(o.issuedAt, false);
        bytes32 digest = _orderDigest(o);
        if (executedOrders[digest]) revert OrderReplayed(digest);
        Pledge storage p = _pledge(o.pledgeId);
        uint32 epoch = registry.verify(digest, signerBitmap, signature);
        executedOrders[digest] = true;

        address payee;
        uint256 paid;
        if (o.kind == RELEASE) {
            if (p.state != PledgeState.RELEASING) revert PledgeNotReleasing(o.pledgeId, p.state);
            (payee, paid) = (p.account, p.amount);
            p.amount = 0;
            p.state = PledgeState.RELEASED;
        } else if (o.kind == CLAIM) {
            (payee, paid) = (_claim(o, p), o.amount);
        } else if (o.kind == MOVE) {
            _move(o, p);
        } else {
            revert UnknownOrderKind(o.kind);
        }
        _changed(o.pledgeId, p);
        emit OrderExecuted(digest, o.kind, o.pledgeId, epoch);
        if (paid != 0) quoteToken.safeTransfer(payee, paid);
    }

    /// @inheritdoc IVenueLink
    function submit(IAttestationVerifier.MarginBatch calldata batch, bytes calldata signatures)
        external
        returns (uint256 applied)
    {
        IAttestationVerifier inner_ = inner;
        if (address(inner_) == address(0)) revert NoInnerVerifier();
        return inner_.submit(batch, signatures);
    }

    // ================================================================ ADMIN
    /// @inheritdoc IVenueLink
    function configure(Venue[] calldata venues_, ICommitteeRegistry registry_, IAttestationVerifier inner_)
        external
        onlyOwner
    {
        if (linkId != bytes32(0)) revert AlreadyConfigured();
        if (address(registry_) == address(0)) revert ZeroAddress();
        uint256 count = venues_.length;
        if (count < 2 || count > MAX_VENUES) revert VenueCountOutOfRange(count, MAX_VENUES);
        uint64[] memory chainIds = new uint64[](count);
        address[] memory links = new address[](count);
        bool found;
        for (uint256 i; i < count; ++i) {
            Venue calldata v = venues_[i];
            if (v.link == address(0) || v.claimReceiver == address(0)) revert ZeroAddress();
            for (uint256 j; j < i; ++j) {
                if (chainIds[j] == v.chainId && links[j] == v.link) revert DuplicateVenue(i, v.chainId, v.link);
            }
            (chainIds[i], links[i]) = (v.chainId, v.link);
            if (v.chainId == block.chainid && v.link == address(this)) {
                _selfIndex = uint32(i);
                found = true;
            }
            _venues.push(v);
        }
        if (!found) revert NotInLink(block.chainid, address(this));
        linkId = keccak256(abi.encode(LINK_TAG, chainIds, links));
        registry = registry_;
        inner = inner_;
        emit Configured(linkId, _selfIndex, venues_, address(registry_));
        emit InnerSet(address(inner_));
    }

    /// @inheritdoc IVenueLink
    function setParams(uint32 maxAgeSeconds_, uint16 priceBandBps_) external onlyOwner {
        if (maxAgeSeconds_ == 0 || maxAgeSeconds_ > 1 days || priceBandBps_ == 0 || priceBandBps_ > 2000) {
            revert ParamOutOfRange(maxAgeSeconds_, priceBandBps_);
        }
        (maxAgeSeconds, priceBandBps) = (maxAgeSeconds_, priceBandBps_);
        emit ParamsSet(maxAgeSeconds_, priceBandBps_);
    }

    /// @inheritdoc IVenueLink
    function setInner(IAttestationVerifier inner_) external onlyOwner {
        inner = inner_;
        emit InnerSet(address(inner_));
    }

    // ================================================================ VIEWS
    /// @inheritdoc IVenueLink
    function requirementInForce(
        address account,
        uint64 positionNonce,
        uint256 marketAssetMask,
        uint256[] calldata marketPricesE18,
        uint256 staticImWad,
        uint256 staticMmWad
    ) external view returns (bool inForce, uint256 imWad, uint256 mmWad) {
        uint256 assets = MarginMath.popCount(marketAssetMask);
        if (marketPricesE18.length != assets) revert PriceCountMismatch(marketPricesE18.length, assets);
        AppliedCertificate storage a = _applied[account];
        if (_inForce(a, account, positionNonce, marketAssetMask, marketPricesE18)) {
            uint256 pledged = a.pledgedWad;
            imWad = _clamp(a.imWad, staticImWad, pledged);
            mmWad = _clamp(a.mmWad, staticMmWad, pledged);
            if (mmWad > imWad) imWad = mmWad;
            return (true, imWad, mmWad);
        }
        IAttestationVerifier inner_ = inner;
        if (address(inner_) == address(0)) return (false, staticImWad, staticMmWad);
        return
            inner_.requirementInForce(
                account, positionNonce, marketAssetMask, marketPricesE18, staticImWad, staticMmWad
            );
    }

    /// @inheritdoc IVenueLink
    function certificateDigest(Certificate calldata c) external pure returns (bytes32) {
        return _certificateDigest(c);
    }

    /// @inheritdoc IVenueLink
    function orderDigest(Order calldata o) external pure returns (bytes32) {
        return _orderDigest(o);
    }

    /// @inheritdoc IVenueLink
    function venueCount() external view returns (uint256) {
        return _venues.length;
    }

    /// @inheritdoc IVenueLink
    function venue(uint256 index) external view returns (Venue memory) {
        return _venues[index];
    }

    /// @inheritdoc IVenueLink
    function venues() external view returns (Venue[] memory) {
        return _venues;
    }

    /// @inheritdoc IVenueLink
    function selfIndex() external view returns (uint256) {
        return _selfIndex;
    }

    /// @inheritdoc IVenueLink
    function appliedCertificate(address account) external view returns (AppliedCertificate memory) {
        return _applied[account];
    }

    /// @inheritdoc IVenueLink
    function pledgeOf(uint256 pledgeId) external view returns (Pledge memory) {
        return _pledges[pledgeId];
    }

    // ================================================================ INTERNAL
    /// @dev The in-force rule (IVenueLink): the nonces, the key epoch, the age, the price cover
    /// and band. A certificate's prices are ascending by asset id, so an asset's price sits at
    /// the number of the mask's bits below it.
    function _inForce(
        AppliedCertificate storage a,
        address account,
        uint64 positionNonce,
        uint256 marketAssetMask,
        uint256[] calldata marketPricesE18
    ) internal view returns (bool) {
        uint64 issuedAt = a.issuedAt;
        uint256 certifiedMask = a.priceAssetMask;
        if (
            a.sequence == 0 || a.positionNonce != positionNonce || a.pledgeNonce != pledgeNonce[account]
                || issuedAt > block.timestamp || block.timestamp - issuedAt > maxAgeSeconds
                || marketAssetMask & ~certifiedMask != 0 || a.keyEpoch != registry.keyEpoch()
        ) return false;
        uint256 band = priceBandBps;
        uint256 k;
        for (uint256 mask = marketAssetMask; mask != 0; mask &= mask - 1) {
            uint256 asset = MarginMath.lowestBit(mask);
            uint256 current = marketPricesE18[k++];
            uint256 certified = a.pricesE18[MarginMath.popCount(certifiedMask & ((1 << asset) - 1))];
            if (MarginMath.outsideBand(certified, current, band)) return false;
        }
        return true;
    }

    /// @dev X2: never below static less what pledges cover; never capped above.
    function _clamp(uint256 certifiedWad, uint256 staticWad, uint256 pledgedWad) internal pure returns (uint256) {
        uint256 floor = staticWad > pledgedWad ? staticWad - pledgedWad : 0;
        return certifiedWad > floor ? certifiedWad : floor;
    }

    /// @dev A certificate's or an order's issue time against now and `maxAgeSeconds`.
    function _checkAge(uint64 issuedAt, bool isCertificate) internal view {
        if (issuedAt > block.timestamp) {
            if (isCertificate) revert CertificateFromFuture(issuedAt, block.timestamp);
            revert OrderFromFuture(issuedAt, block.timestamp);
        }
        if (block.timestamp - issuedAt > maxAgeSeconds) {
            if (isCertificate) revert CertificateExpired(issuedAt, maxAgeSeconds);
            revert OrderExpired(issuedAt, maxAgeSeconds);
        }
    }

    /// @dev A pledge's target: another venue of the link.
    function _checkTarget(uint256 toVenue) internal view {
        if (toVenue >= _venues.length) revert UnknownVenue(toVenue, _venues.length);
        if (toVenue == _selfIndex) revert CannotPledgeToSelf(toVenue);
    }

    function _pledge(uint256 pledgeId) internal view returns (Pledge storage p) {
        p = _pledges[pledgeId];
        if (p.state == PledgeState.NONE) revert UnknownPledge(pledgeId);
    }

    /// @dev X4, G04: each claim id once, never more than remains, only for the venue the pledge
    /// favours, paid to that venue's receiver on this chain. Returns the receiver.
    function _claim(Order calldata o, Pledge storage p) internal returns (address receiver) {
        if (paidClaims[o.claimId]) revert ClaimAlreadyPaid(o.claimId);
        if (p.state != PledgeState.ACTIVE && p.state != PledgeState.RELEASING) {
            revert PledgeNotActive(o.pledgeId, p.state);
        }
        if (o.toVenue != p.toVenue) revert ClaimFromWrongVenue(o.pledgeId, o.toVenue, p.toVenue);
        if (o.amount == 0) revert ZeroAmount();
        if (o.amount > p.amount) revert ClaimExceedsPledge(o.claimId, o.amount, p.amount);
        paidClaims[o.claimId] = true;
        p.amount -= o.amount;
        receiver = _venues[p.toVenue].claimReceiver;
        emit ClaimPaid(o.claimId, o.pledgeId, receiver, o.amount);
    }

    /// @dev X5: a whole active pledge to another venue, within the account's allowance.
    function _move(Order calldata o, Pledge storage p) internal {
        if (p.state != PledgeState.ACTIVE) revert PledgeNotActive(o.pledgeId, p.state);
        _checkTarget(o.toVenue);
        if (o.toVenue == p.toVenue) revert MoveToSameVenue(o.pledgeId, o.toVenue);
        if (o.amount != p.amount) revert MoveAmountMismatch(o.pledgeId, o.amount, p.amount);
        address account = p.account;
        uint256 allowance = rebalanceAllowance[account];
        if (o.amount > allowance) revert RebalanceCapExceeded(account, o.amount, allowance);
        rebalanceAllowance[account] = allowance - o.amount;
        p.toVenue = uint32(o.toVenue);
        emit RebalanceAllowanceSet(account, allowance - o.amount);
    }

    /// @dev Every pledge change: a new pledge nonce for its account (the certificates that
    /// counted the old state stop counting here) and the one event that rebuilds it.
    function _changed(uint256 pledgeId, Pledge storage p) internal {
        address account = p.account;
        uint64 nonce = ++pledgeNonce[account];
        emit PledgeChanged(pledgeId, account, p.toVenue, p.amount, p.state, nonce);
    }

    function _certificateDigest(Certificate calldata c) internal pure returns (bytes32) {
        return keccak256(abi.encode(CERTIFICATE_TAG, c));
    }

    function _orderDigest(Order calldata o) internal pure returns (bytes32) {
        return keccak256(abi.encode(ORDER_TAG, o));
    }
}
