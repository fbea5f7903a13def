// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IAttestationVerifier} from "./IAttestationVerifier.sol";
import {ICommitteeRegistry} from "./ICommitteeRegistry.sol";

/// @title IVenueLink
/// @notice One venue's end of a link between marginsync venues on several chains (ARCHITECTURE
/// "Across venues", X1–X7). It stands between the clearinghouse and the venue's own attestation
/// verifier: the clearinghouse's `attestor` is this contract, whose `requirementInForce` has
/// IAttestationVerifier's selector, so the one health function reads a cross-venue requirement
/// without any change to the clearinghouse.
///
/// A link is the ordered list of venues (chain id, VenueLink address, claim receiver); every venue
/// computes the same `linkId` from it. A committee (ICommitteeRegistry, the same BLS keys on every
/// venue) signs, per account, a `Certificate`: the whole book's equity and requirement (X1) and,
/// for every venue of the link in link order, the requirement allocated to it, the pledges counted
/// in its favour, the account's nonces there and the prices used. Each venue applies the same
/// certificate (one digest, one aggregate signature) and reads its own entry.
///
/// In force (X2, G08): a certificate counts for an account only while its own entry's position
/// nonce is the account's current one, its pledge nonce is the current one here, its key epoch
/// is the registry's current one (a rotated or removed member voids it at once, K4), it is at most
/// `maxAgeSeconds` old (and not from the future), its prices cover every market asset the account
/// holds and each lies within `priceBandBps` of the current oracle price. Then the requirement is
/// clamped: `im = max(certIm, staticIm − min(staticIm, pledged))`, likewise MM, then
/// `im = max(im, mm)`: a certificate may always tighten, and loosens only by what collateral
/// pledged on other venues covers. Otherwise the answer is the inner verifier's (today's ECDSA
/// attestations, S1) or, without one, the static requirement (X6, S2).
///
/// Pledges (X3–X5): a trader locks quote tokens here in favour of another venue (`pledge`). Only
/// committee-signed orders move them: RELEASE back to the trader (after `requestRelease`: two
/// phases, G03), CLAIM to the claiming venue's insurance fund on this chain (X4, once per claim
/// id, G04), MOVE to another venue within the trader's allowance (X5). Pledges are in the quote
/// token only (1 unit = $1, weight 100%): `pledgedWad = amount × 10^(18 − decimals)`. Every
/// change to an account's pledges bumps its pledge nonce, so a certificate that counted the old
/// state stops counting here at once.
///
/// Trust assumptions: fewer than k committee members are compromised (a quorum could loosen an
/// account's margin by at most the pledges it reports, tighten it without bound, and release or
/// claim pledges; it can never touch the clearinghouse's balances); the owner configures the link
/// and registry honestly (configuration is once only); the quote token is a plain ERC-20 (no fee
/// on transfer, no callbacks); the clearinghouse and inner verifier are the venue's own.
interface IVenueLink {
    // ================================================================ TYPES
    /// @notice One venue of the link, as this venue knows it.
    /// @param claimReceiver The venue's insurance-fund address on THIS chain: where a claim the
    /// venue makes against a pledge held here is paid (X4).
    struct Venue {
        uint64 chainId;
        address link;
        address claimReceiver;
    }

    /// @notice One venue's part of a certificate.
    /// @param positionNonce The account's clearinghouse position nonce there, as certified.
    /// @param pledgeNonce The account's pledge nonce in that venue's VenueLink, as certified.
    /// @param imWad The initial margin allocated to that venue (before the X2 clamp).
    /// @param pledgedWad Pledges held on other venues in this venue's favour, counted here.
    /// @param priceAssetMask That venue's oracle asset ids of the account's markets there.
    /// @param pricesE18 One price per set bit of `priceAssetMask`, ascending asset id.
    struct VenueView {
        uint64 chainId;
        address link;
        uint64 positionNonce;
        uint64 pledgeNonce;
        uint256 imWad;
        uint256 mmWad;
        uint256 pledgedWad;
        uint256 priceAssetMask;
        uint256[] pricesE18;
    }

    /// @notice What the committee signs for one account: `certificateDigest` is the BLS message.
    /// @param sequence The account's link sequence, strictly increasing across certificates (X7).
    /// @param issuedAt Unix seconds.
    /// @param venues Exactly the link's venues, in link order.
    struct Certificate {
        bytes32 linkId;
        address account;
        uint64 sequence;
        uint64 issuedAt;
        int256 globalEquityWad;
        uint256 globalImWad;
        uint256 globalMmWad;
        VenueView[] venues;
    }

    /// @notice What an account's last certificate left here: its own entry, and how it was signed.
    struct AppliedCertificate {
        uint64 sequence;
        uint64 issuedAt;
        uint64 positionNonce;
        uint64 pledgeNonce;
        uint32 keyEpoch;
        uint256 imWad;
        uint256 mmWad;
        uint256 pledgedWad;
        uint256 priceAssetMask;
        uint256[] pricesE18;
    }

    enum PledgeState {
        NONE,
        ACTIVE,
        RELEASING,
        RELEASED
    }

    /// @notice Quote tokens locked here in favour of venue `toVenue`.
    /// @param amount What remains (claims reduce it), in quote token units.
    struct Pledge {
        address account;
        uint32 toVenue;
        PledgeState state;
        uint256 amount;
    }

    /// @notice A committee-signed order on one pledge held here. `kind`: 1 RELEASE (pay the
    /// remaining amount back to the account), 2 CLAIM (pay `amount` to venue `toVenue`'s claim
    /// receiver, once per `claimId`), 3 MOVE (the pledge now favours `toVenue`; `amount` is the
    /// whole remaining amount). `orderDigest` is the BLS message.
    /// @param claimId keccak256(abi.encode(claimingChainId, account, deficitBlock, deficitLogIndex)).
    struct Order {
        bytes32 linkId;
        uint64 chainId;
        address link;
        uint8 kind;
        uint256 pledgeId;
        uint256 amount;
        uint256 toVenue;
        bytes32 claimId;
        uint64 issuedAt;
    }

    // ================================================================ ERRORS
    error AlreadyConfigured();
    error NotConfigured();
    error ZeroAddress();
    error ZeroAmount();
    /// @notice The link must hold 2..MAX_VENUES venues.
    error VenueCountOutOfRange(uint256 count, uint256 maxVenues);
    /// @notice Venue `index` repeats an earlier venue's chain id and link.
    error DuplicateVenue(uint256 index, uint64 chainId, address link);
    /// @notice The configured list does not name this contract on this chain.
    error NotInLink(uint256 chainId, address link);
    error ParamOutOfRange(uint256 maxAgeSeconds, uint256 priceBandBps);
    error WrongLink(bytes32 expected, bytes32 got);
    error VenueCountMismatch(uint256 got, uint256 expected);
    /// @notice Entry `index` of the certificate names another venue than the link's venue `index`.
    error VenueMismatch(uint256 index, uint64 chainId, address link);
    error CertificateFromFuture(uint256 issuedAt, uint256 blockTimestamp);
    error CertificateExpired(uint256 issuedAt, uint256 maxAgeSeconds);
    error CertificateReplayed(address account, uint64 sequence, uint64 lastSequence);
    error StalePositionNonce(address account, uint64 certified, uint64 current);
    error StalePledgeNonce(address account, uint64 certified, uint64 current);
    error PriceCountMismatch(uint256 pricesGiven, uint256 assetsInMask);
    error UnknownVenue(uint256 venue, uint256 venueCount);
    error CannotPledgeToSelf(uint256 venue);
    error UnknownPledge(uint256 pledgeId);
    error NotPledgeOwner(uint256 pledgeId, address caller, address account);
    error PledgeNotActive(uint256 pledgeId, PledgeState state);
    error PledgeNotReleasing(uint256 pledgeId, PledgeState state);
    error OrderNotForThisVenue(uint64 chainId, address link);
    error OrderFromFuture(uint256 issuedAt, uint256 blockTimestamp);
    error OrderExpired(uint256 issuedAt, uint256 maxAgeSeconds);
    error OrderReplayed(bytes32 digest);
    error UnknownOrderKind(uint8 kind);
    error ClaimAlreadyPaid(bytes32 claimId);
    error ClaimExceedsPledge(bytes32 claimId, uint256 amount, uint256 remaining);
    /// @notice A claim must come from the venue the pledge favours.
    error ClaimFromWrongVenue(uint256 pledgeId, uint256 claimingVenue, uint256 pledgedTo);
    error MoveToSameVenue(uint256 pledgeId, uint256 venue);
    error MoveAmountMismatch(uint256 pledgeId, uint256 amount, uint256 remaining);
    error RebalanceCapExceeded(address account, uint256 amount, uint256 allowance);
    error NoInnerVerifier();

    // ================================================================ EVENTS
    /// @notice The link is set, once: its venues in order, this venue's index, the id all venues share.
    event Configured(bytes32 indexed linkId, uint256 selfIndex, Venue[] venues, address registry);
    event InnerSet(address indexed inner);
    event ParamsSet(uint256 maxAgeSeconds, uint256 priceBandBps);
    /// @notice A certificate for `account` is stored here: `applied` is everything the in-force
    /// check reads (with the registry's key epoch and the account's current nonces), so an
    /// observer rebuilds `requirementInForce` from events alone.
    event CertificateApplied(address indexed account, bytes32 indexed digest, AppliedCertificate applied);
    /// @notice Pledge `pledgeId` is now (`toVenue`, `amount` remaining, `state`) and its account's
    /// pledge nonce is `pledgeNonce`. Emitted on every change (pledge, request release, release,
    /// claim, move): the pledges and nonces are rebuilt from this event alone.
    event PledgeChanged(
        uint256 indexed pledgeId,
        address indexed account,
        uint256 toVenue,
        uint256 amount,
        PledgeState state,
        uint64 pledgeNonce
    );
    /// @notice `amount` of pledge `pledgeId` was paid to `receiver` for `claimId` (X4).
    event ClaimPaid(bytes32 indexed claimId, uint256 indexed pledgeId, address receiver, uint256 amount);
    /// @notice A committee order took effect (its digest can never be executed again).
    event OrderExecuted(bytes32 indexed digest, uint8 kind, uint256 indexed pledgeId, uint32 keyEpoch);
    /// @notice How much of `account`'s pledges the committee may still move (X5).
    event RebalanceAllowanceSet(address indexed account, uint256 allowance);

    // ================================================================ ACTIONS
    /// @notice Applies a certificate for `c.account` here. Permissionless: the aggregate
    /// signature of ≥ k committee members over `certificateDigest(c)` is the authority. Reverts
    /// `WrongLink`, `VenueCountMismatch`, `VenueMismatch` (G01), `CertificateFromFuture`,
    /// `CertificateExpired`, `CertificateReplayed` (X7), `StalePositionNonce`,
    /// `StalePledgeNonce`, `PriceCountMismatch`, or the registry's errors.
    function submitCertificate(Certificate calldata c, uint256 signerBitmap, bytes calldata signature) external;

    /// @notice Locks `amount` quote tokens of the caller here in favour of venue `toVenue` (X3).
    /// The caller approves this contract first.
    function pledge(uint256 toVenue, uint256 amount) external returns (uint256 pledgeId);

    /// @notice Phase 1 of a release (X3, G03): the pledge's account asks; the committee stops
    /// counting it at its target and then signs the RELEASE order.
    function requestRelease(uint256 pledgeId) external;

    /// @notice The caller lets the committee move up to `capAmount` quote units of its pledges
    /// (cumulative: each move uses up its amount) (X5).
    function setRebalanceCap(uint256 capAmount) external;

    /// @notice Executes a committee-signed RELEASE, CLAIM or MOVE order. Permissionless.
    function executeOrder(Order calldata o, uint256 signerBitmap, bytes calldata signature) external;

    /// @notice Forwards an ECDSA attestation batch to the inner verifier (the attestor the
    /// clearinghouse had before the link), so a single-venue engine keeps working unchanged.
    function submit(IAttestationVerifier.MarginBatch calldata batch, bytes calldata signatures)
        external
        returns (uint256 applied);

    // ================================================================ ADMIN (owner)
    /// @notice Sets the link, once. Reverts `NotInLink` unless (block.chainid, this) is in the list.
    function configure(Venue[] calldata venues, ICommitteeRegistry registry, IAttestationVerifier inner) external;

    /// @notice maxAgeSeconds in 1..1 day, priceBandBps in 1..2000.
    function setParams(uint32 maxAgeSeconds, uint16 priceBandBps) external;

    /// @notice The verifier asked when no certificate is in force; address(0): static margin.
    function setInner(IAttestationVerifier inner) external;

    // ================================================================ VIEWS
    /// @notice IAttestationVerifier's question, answered by the certificate in force (clamped,
    /// X2), else by the inner verifier, else static. Never reverts on a lapsed certificate; like
    /// the inner verifier, reverts `PriceCountMismatch` for prices that do not match the mask.
    function requirementInForce(
        address account,
        uint64 positionNonce,
        uint256 marketAssetMask,
        uint256[] calldata marketPricesE18,
        uint256 staticImWad,
        uint256 staticMmWad
    ) external view returns (bool inForce, uint256 imWad, uint256 mmWad);

    function certificateDigest(Certificate calldata c) external pure returns (bytes32);

    function orderDigest(Order calldata o) external pure returns (bytes32);

    function linkId() external view returns (bytes32);

    function venueCount() external view returns (uint256);

    function venue(uint256 index) external view returns (Venue memory);

    function venues() external view returns (Venue[] memory);

    /// @notice This venue's index in the link.
    function selfIndex() external view returns (uint256);

    function registry() external view returns (ICommitteeRegistry);

    function inner() external view returns (IAttestationVerifier);

    function maxAgeSeconds() external view returns (uint32);

    function priceBandBps() external view returns (uint16);

    function appliedCertificate(address account) external view returns (AppliedCertificate memory);

    function pledgeNonce(address account) external view returns (uint64);

    function pledgeOf(uint256 pledgeId) external view returns (Pledge memory);

    function pledgeCount() external view returns (uint256);

    function rebalanceAllowance(address account) external view returns (uint256);

    function paidClaims(bytes32 claimId) external view returns (bool);

    function executedOrders(bytes32 digest) external view returns (bool);
}
