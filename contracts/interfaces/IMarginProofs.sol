// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClearinghouse} from "./IClearinghouse.sol";
import {IGroth16Verifier} from "./IGroth16Verifier.sol";
import {IOracleRouter} from "./IOracleRouter.sol";

/// @title IMarginProofs
/// @notice Records margin requirements proven with zero-knowledge proofs (ARCHITECTURE P1–P4).
/// Anyone may submit (P3): a Groth16 proof that, for each named account, MM and IM (micro-USD)
/// are the published model's output (scenario portfolio margin for perps, docs/proofs.md) for
/// that account's positions at the given prices.
///
/// Binding (P1): the contract builds the proof's public input itself, from its own reads: each
/// account's positions from the clearinghouse (`account().marketMask`, `position`, each market's
/// `oracleAsset`), netted per underlying; the registered model's Poseidon hash; and the submitted
/// prices, each checked within `priceBandBps` of the oracle. A proof about other positions,
/// another model or other prices therefore fails verification (H01).
///
/// A recorded requirement is in force while the account's position nonce is the one it was
/// proven at, the model version is current, and every price it was proven at is still within
/// `priceBandBps` of the oracle (`provenRequirement`, which the clearinghouse's health function
/// can ask as it asks the attestation verifier).
///
/// Limits of the circuits: underlyings are oracle assets 0–7; an account has at most `slots`
/// underlyings per circuit; |net size| < 2^96 (1e-18 units); prices are taken in 1e-8 USD below
/// 2^64; MM and IM below 2^64 micro-USD. Anything outside is refused, never wrapped (H04).
///
/// Trust assumptions: the verifying keys come from a setup whose secrets nobody kept (the
/// development ceremony is single-party: docs/proofs.md); the oracle is honest within its band;
/// the owner registers the model whose parameters docs/proofs.md publishes. Nobody needs a key to
/// submit, and no submitter can record anything but the model's output.
interface IMarginProofs {
    // ================================================================ TYPES
    /// @notice A compiled circuit: `accounts` accounts of up to `slots` underlyings each.
    struct Circuit {
        IGroth16Verifier verifier;
        uint8 accounts;
        uint8 slots;
    }

    /// @notice What the proof claims for one account. `account` = address(0) pads a batch.
    struct Claim {
        address account;
        uint64 imMicroUsd;
        uint64 mmMicroUsd;
    }

    /// @notice An account's last proven requirement: one storage slot.
    struct ProvenEntry {
        uint64 positionNonce;
        uint64 imMicroUsd;
        uint64 mmMicroUsd;
        uint32 priceSetId;
        uint32 modelVersion;
    }

    // ================================================================ ERRORS
    error UnknownCircuit(uint256 circuitId, uint256 circuitCount);
    error ClaimCountOutOfRange(uint256 given, uint256 max);
    error TooManyUnderlyings(address account, uint256 count, uint256 max);
    error UnsupportedUnderlying(address account, uint256 marketId, uint256 asset);
    error SizeOutOfRange(address account, uint256 asset, int256 netSize);
    error ProvenPriceOutsideBand(uint256 asset, uint256 provenPriceE18, uint256 oraclePriceE18, uint256 priceBandBps);
    error PriceUnavailable(uint256 asset, IOracleRouter.PriceStatus status);
    error InvalidProof(uint256 circuitId);
    error InvalidCircuit(address verifier, uint256 publicInputs, uint256 expected);
    error InvalidPriceBand(uint256 priceBandBps);
    error PriceCountMismatch(uint256 given, uint256 expected);

    // ================================================================ EVENTS
    /// @notice The prices (1e-8 USD, by asset id) that the requirements of one submission were
    /// proven at, recorded once as `priceSetId`.
    event PricesProven(uint32 indexed priceSetId, uint256 indexed circuitId, uint64[8] pricesE8);
    /// @notice `account`'s proven requirement is now this entry (S7: enough to rebuild it).
    event RequirementProven(
        address indexed account,
        uint32 indexed priceSetId,
        uint64 positionNonce,
        uint64 imMicroUsd,
        uint64 mmMicroUsd,
        uint32 modelVersion
    );
    /// @notice A new model version; requirements proven under older ones stop being in force.
    event ModelSet(uint32 indexed version, uint256 modelHash);
    event PriceBandSet(uint256 priceBandBps);
    event CircuitAdded(uint256 indexed circuitId, address verifier, uint256 accounts, uint256 slots);

    // ================================================================ ACTIONS
    /// @notice Verifies `proof` for `claims` (at most the circuit's account count; the rest is
    /// padding) at `pricesE8` and records each claimed requirement. Permissionless (P3). Reverts
    /// `InvalidProof` unless the proof holds for the public input this contract builds.
    function submit(uint256 circuitId, Claim[] calldata claims, uint64[8] calldata pricesE8, uint256[8] calldata proof)
        external;

    // ================================================================ ADMIN (owner)
    /// @notice Registers the model by the Poseidon hash of its parameter words (a new version).
    function setModel(uint256 modelHash) external;

    function setPriceBandBps(uint16 priceBandBps) external;

    /// @notice Adds a circuit; its verifier must take exactly the layout's number of inputs.
    function addCircuit(Circuit calldata circuit) external returns (uint256 circuitId);

    // ================================================================ VIEWS
    /// @notice The proven requirement in force for `account` at its current position nonce and
    /// the current oracle prices of the assets in `assetMask` (those of its open markets), one
    /// price per set bit in ascending asset order; when none is, `inForce` is false and the
    /// `other` values come back. The arguments and answer have the attestation verifier's
    /// `requirementInForce` shape: the clearinghouse's health function asks both alike, this
    /// one whenever an attested MM exceeds the static one (proof-gated liquidation, SPEC I34).
    function provenRequirement(
        address account,
        uint64 positionNonce,
        uint256 assetMask,
        uint256[] calldata pricesE18,
        uint256 otherImWad,
        uint256 otherMmWad
    ) external view returns (bool inForce, uint256 imWad, uint256 mmWad);

    /// @notice The public input a proof for these claims and prices must be made for, built from
    /// current state exactly as `submit` builds it (for provers and auditors).
    function publicInputs(uint256 circuitId, Claim[] calldata claims, uint64[8] calldata pricesE8)
        external
        view
        returns (uint256[] memory input);

    function provenEntry(address account) external view returns (ProvenEntry memory);

    function priceSet(uint32 priceSetId) external view returns (uint64[8] memory pricesE8);

    function circuit(uint256 circuitId) external view returns (Circuit memory);

    function circuitCount() external view returns (uint256);

    function clearinghouse() external view returns (IClearinghouse);

    function modelHash() external view returns (uint256);

    function modelVersion() external view returns (uint32);

    function priceBandBps() external view returns (uint16);
}
