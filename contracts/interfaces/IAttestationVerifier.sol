// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IAttestationVerifier
/// @notice Verifies k-of-n signed margin attestations from the off-chain engine (EIP-712) and says
/// whether an account's attested requirement is in force (S1). The clearinghouse asks it from its
/// one health function and falls back to static margin whenever the answer is no (S2).
///
/// A batch carries a sequence, an issue time, the oracle prices the engine computed from (one per
/// asset in `priceAssetMask`, ascending asset id) and per-account entries (account, position
/// nonce, IM, MM in micro-USD), packed `ENTRY_BYTES` (44) bytes each with no padding so that an
/// entry costs little more than its storage slot (I36). One quorum check covers the whole batch,
/// before anything is applied; each entry is then applied only if its sequence is newer than the
/// account's last applied one, so a batch partly front-run or replayed still applies the rest
/// (B10) and never applies anything twice (B01).
///
/// An applied requirement is in force only while ALL hold (S1): signed by ≥ k distinct registered
/// keys under the current key set (any removal, rotation or threshold change starts a new key
/// epoch and voids older attestations, B09); issued no later than now and no earlier than
/// now − maxAge; bound to the account's current position nonce; every price of the account's
/// markets in the batch lies within bandBps of the current oracle price (B11). Even then it is
/// clamped to [floorBps, capBps] of the static requirement, so a compromised quorum cannot zero
/// anyone's margin or demand unbounded margin (B12). Equity is never attested.
///
/// Trust assumptions: fewer than k engine keys are compromised; the owner manages keys honestly.
/// The EIP-712 domain (name "marginsync", version "1", chain id, this contract) binds every
/// signature to one deployment on one chain (S8, B03).
interface IAttestationVerifier {
    // ================================================================ TYPES
    /// @notice `entries` is the packed entries, `ENTRY_BYTES` (44) each, big-endian, no padding:
    /// account (20 bytes) ‖ mmMicroUsd (uint64) ‖ imMicroUsd (uint64) ‖ positionNonce (uint64).
    /// The fields after the account are in the order of the account's `AppliedEntry` slot (high to
    /// low, above the sequence), so an entry is stored with one shift. EIP-712 signs `entries` as
    /// `bytes` (its keccak256), so the signed message is exactly these bytes.
    struct MarginBatch {
        uint64 sequence;
        uint64 issuedAt;
        uint32 priceAssetMask;
        uint256[] pricesE18;
        bytes entries;
    }

    /// @notice An account's last applied attestation: one storage slot.
    struct AppliedEntry {
        uint64 sequence;
        uint64 positionNonce;
        uint64 imMicroUsd;
        uint64 mmMicroUsd;
    }

    struct Params {
        uint32 maxAgeSeconds;
        uint16 priceBandBps;
        uint16 floorBps;
        uint32 capBps;
        uint16 maxBatchSize;
    }

    // ================================================================ ERRORS
    error EntriesNotWhole(uint256 entriesBytes, uint256 entryBytes);
    error BatchSizeOutOfRange(uint256 size, uint256 maxBatchSize);
    error PriceCountMismatch(uint256 pricesGiven, uint256 assetsInMask);
    error AttestationFromFuture(uint256 issuedAt, uint256 blockTimestamp);
    error AttestationExpired(uint256 issuedAt, uint256 maxAgeSeconds);
    error SignatureCountMismatch(uint256 signatureBytes, uint256 threshold);
    error InvalidSignature(uint256 index);
    error SignersNotAscending(uint256 index, address signer);
    error UnknownSigner(address signer);
    error ConflictingBatch(uint64 sequence, bytes32 recordedDigest, bytes32 digest);
    error NothingApplied(uint64 sequence);
    error InvalidSigner(address signer);
    error SignerAlreadyRegistered(address signer);
    error SignerNotRegistered(address signer);
    error InvalidThreshold(uint256 threshold, uint256 signerCount);
    error InvalidParams(
        uint256 maxAgeSeconds, uint256 priceBandBps, uint256 floorBps, uint256 capBps, uint256 maxBatchSize
    );

    // ================================================================ EVENTS
    /// @notice A batch passed the quorum check; `applied` of its entries took effect. The one
    /// event per batch (S7, I36): it carries the packed `entries` as submitted and `appliedBits`
    /// (bit `i % 256` of word `i / 256` set when entry `i` took effect; an applied entry becomes
    /// its account's `AppliedEntry` with this `sequence`), and the prices the batch was computed
    /// from, which decide (with the key epoch) whether its entries are in force, so an observer
    /// rebuilds every applied entry and S1 from events alone.
    event BatchApplied(
        uint64 indexed sequence,
        bytes32 indexed digest,
        uint64 issuedAt,
        uint32 keyEpoch,
        uint32 priceAssetMask,
        uint256[] pricesE18,
        bytes entries,
        uint256[] appliedBits,
        uint256 applied,
        uint256 skipped
    );
    /// @notice An entry was not applied because the account already has a newer (or equal) one.
    event AttestationSkipped(address indexed account, uint64 indexed sequence, uint64 appliedSequence);
    /// @notice An entry was not applied because it claims MM above IM.
    event AttestationRejected(address indexed account, uint64 indexed sequence, uint64 imMicroUsd, uint64 mmMicroUsd);
    event SignerAdded(address indexed signer, uint32 keyEpoch);
    event SignerRemoved(address indexed signer, uint32 keyEpoch);
    event ThresholdSet(uint256 threshold, uint32 keyEpoch);
    event ParamsSet(
        uint256 maxAgeSeconds, uint256 priceBandBps, uint256 floorBps, uint256 capBps, uint256 maxBatchSize
    );

    // ================================================================ ACTIONS
    /// @notice Verifies the quorum over `batch` and applies its fresh entries. Permissionless: the
    /// signatures are the authority. `signatures` is exactly `threshold` 65-byte (r, s, v)
    /// signatures, concatenated in ascending order of signer address. Reverts `EntriesNotWhole`
    /// unless `batch.entries` is a whole number of 44-byte entries, and `NothingApplied` when
    /// every entry is stale (an exact replay changes nothing).
    function submit(MarginBatch calldata batch, bytes calldata signatures) external returns (uint256 applied);

    // ================================================================ ADMIN (owner)
    function addSigner(address signer) external;

    function removeSigner(address signer) external;

    /// @notice Replaces `oldSigner` by `newSigner` in one step: the old key stops counting at once.
    function rotateSigner(address oldSigner, address newSigner) external;

    function setThreshold(uint8 threshold) external;

    function setParams(Params calldata params) external;

    // ================================================================ VIEWS
    /// @notice The requirement in force for `account` given its current position nonce, the
    /// current oracle prices of its markets and its static requirement. `inForce` false means the
    /// static values are returned unchanged (S2). Reverts only with `PriceCountMismatch`.
    /// @param marketAssetMask The oracle assets of the account's open markets.
    /// @param marketPricesE18 One current price per set bit of `marketAssetMask`, ascending asset id.
    function requirementInForce(
        address account,
        uint64 positionNonce,
        uint256 marketAssetMask,
        uint256[] calldata marketPricesE18,
        uint256 staticImWad,
        uint256 staticMmWad
    ) external view returns (bool inForce, uint256 imWad, uint256 mmWad);

    /// @notice The EIP-712 digest that signers sign for `batch`.
    function batchDigest(MarginBatch calldata batch) external view returns (bytes32);

    function appliedEntry(address account) external view returns (AppliedEntry memory);

    function isSigner(address signer) external view returns (bool);

    function signerCount() external view returns (uint256);

    function threshold() external view returns (uint8);

    function keyEpoch() external view returns (uint32);

    function params() external view returns (Params memory);

    function MARGIN_BATCH_TYPEHASH() external view returns (bytes32);

    /// @notice The size of one packed entry in `MarginBatch.entries`: 44 bytes.
    function ENTRY_BYTES() external view returns (uint256);
}
