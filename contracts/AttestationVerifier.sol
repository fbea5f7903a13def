// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {IAttestationVerifier} from "./interfaces/IAttestationVerifier.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {MarginMath} from "./libraries/MarginMath.sol";

/// @title AttestationVerifier
/// @notice k-of-n EIP-712 margin attestations and the S1 validity check (see IAttestationVerifier).
contract AttestationVerifier is IAttestationVerifier, Ownable2Step, EIP712 {
    using MarginMath for uint256;
    using SafeCast for uint256;

    // ================================================================ STORAGE
    /// @inheritdoc IAttestationVerifier
    bytes32 public constant MARGIN_BATCH_TYPEHASH = keccak256(
        "MarginBatch(uint64 sequence,uint64 issuedAt,uint32 priceAssetMask,uint256[] pricesE18,bytes entries)"
    );
    /// @inheritdoc IAttestationVerifier
    uint256 public constant ENTRY_BYTES = 44;

    /// @dev Batch records live in a ring so that recording one rewrites warm-able, non-zero slots
    /// instead of creating new ones; an entry whose record was overwritten is simply not in force.
    uint256 internal constant RING_SIZE = 4096;
    uint256 internal constant MAX_ASSETS = 32;
    uint256 internal constant MICRO_USD_TO_WAD = 1e12;
    uint256 internal constant SIGNATURE_BYTES = 65;

    struct BatchRecord {
        uint64 sequence;
        uint64 issuedAt;
        uint32 keyEpoch;
        uint32 priceAssetMask;
        bytes32 digest;
        uint128[MAX_ASSETS] pricesE18;
    }

    /// @dev Everything the in-force check reads, in one slot.
    struct Config {
        uint32 keyEpoch;
        uint8 threshold;
        Params params;
    }

    Config internal _config;
    uint256 public signerCount;
    mapping(address signer => bool) public isSigner;
    mapping(address account => AppliedEntry) internal _entries;
    mapping(uint256 ringIndex => BatchRecord) internal _records;

    // ================================================================ CONSTRUCTOR
    constructor(address owner_, address[] memory signers, uint8 threshold_, Params memory params_)
        Ownable(owner_)
        EIP712("marginsync", "1")
    {
        for (uint256 i; i < signers.length; ++i) {
            _addSigner(signers[i]);
        }
        _setThreshold(threshold_);
        _setParams(params_);
    }

    // ================================================================ EXTERNAL
    /// @inheritdoc IAttestationVerifier
    function submit(MarginBatch calldata batch, bytes calldata signatures) external returns (uint256 applied) {
        Config memory cfg = _config;
        bytes calldata entries = batch.entries;
        if (entries.length % ENTRY_BYTES != 0) revert EntriesNotWhole(entries.length, ENTRY_BYTES);
        uint256 count = entries.length / ENTRY_BYTES;
        if (count == 0 || count > cfg.params.maxBatchSize) {
            revert BatchSizeOutOfRange(count, cfg.params.maxBatchSize);
        }
        if (batch.issuedAt > block.timestamp) revert AttestationFromFuture(batch.issuedAt, block.timestamp);
        if (block.timestamp - batch.issuedAt > cfg.params.maxAgeSeconds) {
            revert AttestationExpired(batch.issuedAt, cfg.params.maxAgeSeconds);
        }
        uint256 assets = MarginMath.popCount(batch.priceAssetMask);
        if (batch.pricesE18.length != assets) revert PriceCountMismatch(batch.pricesE18.length, assets);
        bytes32 digest = _digest(batch);
        _verifyQuorum(digest, signatures, cfg.threshold);

        uint64 sequence = batch.sequence;
        uint256[] memory appliedBits;
        (appliedBits, applied) = _applyEntries(entries, sequence);
        if (applied == 0) revert NothingApplied(sequence);
        _record(batch, digest, cfg.keyEpoch);
        _emitBatchApplied(batch, digest, cfg.keyEpoch, appliedBits, applied, count - applied);
    }

    // ================================================================ ADMIN
    /// @inheritdoc IAttestationVerifier
    function addSigner(address signer) external onlyOwner {
        _addSigner(signer);
    }

    /// @inheritdoc IAttestationVerifier
    function removeSigner(address signer) external onlyOwner {
        _removeSigner(signer);
        if (signerCount < _config.threshold) revert InvalidThreshold(_config.threshold, signerCount);
    }

    /// @inheritdoc IAttestationVerifier
    function rotateSigner(address oldSigner, address newSigner) external onlyOwner {
        _removeSigner(oldSigner);
        _addSigner(newSigner);
    }

    /// @inheritdoc IAttestationVerifier
    function setThreshold(uint8 threshold_) external onlyOwner {
        _setThreshold(threshold_);
    }

    /// @inheritdoc IAttestationVerifier
    function setParams(Params calldata params_) external onlyOwner {
        _setParams(params_);
    }

    // ================================================================ VIEWS
    /// @inheritdoc IAttestationVerifier
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
        AppliedEntry memory e = _entries[account];
        if (e.sequence == 0 || e.positionNonce != positionNonce) return (false, staticImWad, staticMmWad);
        Config memory cfg = _config;
        BatchRecord storage r = _records[e.sequence % RING_SIZE];
        if (
            r.sequence != e.sequence || r.keyEpoch != cfg.keyEpoch || r.issuedAt > block.timestamp
                || block.timestamp - r.issuedAt > cfg.params.maxAgeSeconds
                || marketAssetMask & ~uint256(r.priceAssetMask) != 0
        ) return (false, staticImWad, staticMmWad);
        uint256 k;
        for (uint256 mask = marketAssetMask; mask != 0; mask &= mask - 1) {
            uint256 current = marketPricesE18[k++];
            uint256 attested = r.pricesE18[MarginMath.lowestBit(mask)];
            if (MarginMath.outsideBand(attested, current, cfg.params.priceBandBps)) {
                return (false, staticImWad, staticMmWad);
            }
        }
        imWad = _clamp(uint256(e.imMicroUsd) * MICRO_USD_TO_WAD, staticImWad, cfg.params);
        mmWad = _clamp(uint256(e.mmMicroUsd) * MICRO_USD_TO_WAD, staticMmWad, cfg.params);
        if (mmWad > imWad) mmWad = imWad;
        return (true, imWad, mmWad);
    }

    /// @inheritdoc IAttestationVerifier
    function batchDigest(MarginBatch calldata batch) external view returns (bytes32) {
        return _digest(batch);
    }

    /// @inheritdoc IAttestationVerifier
    function appliedEntry(address account) external view returns (AppliedEntry memory) {
        return _entries[account];
    }

    /// @inheritdoc IAttestationVerifier
    function threshold() external view returns (uint8) {
        return _config.threshold;
    }

    /// @inheritdoc IAttestationVerifier
    function keyEpoch() external view returns (uint32) {
        return _config.keyEpoch;
    }

    /// @inheritdoc IAttestationVerifier
    function params() external view returns (Params memory) {
        return _config.params;
    }

    // ================================================================ INTERNAL
    /// @dev The signature-scheme seam: everything scheme-specific is here. ECDSA over secp256k1:
    /// exactly `threshold_` signatures, signers strictly ascending (so distinct), each registered.
    /// OpenZeppelin's `tryRecover` rejects high-s (malleable) signatures and v ∉ {27, 28}; a
    /// failed recovery is an error, never address(0) (B04, B05). A BLS12-381 aggregate scheme
    /// would replace this function and nothing else.
    function _verifyQuorum(bytes32 digest, bytes calldata signatures, uint256 threshold_) internal view {
        if (signatures.length != threshold_ * SIGNATURE_BYTES) {
            revert SignatureCountMismatch(signatures.length, threshold_);
        }
        address previous;
        for (uint256 i; i < threshold_; ++i) {
            uint256 offset = i * SIGNATURE_BYTES;
            bytes32 r = bytes32(signatures[offset:offset + 32]);
            bytes32 s = bytes32(signatures[offset + 32:offset + 64]);
            uint8 v = uint8(signatures[offset + 64]);
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, v, r, s);
            if (err != ECDSA.RecoverError.NoError) revert InvalidSignature(i);
            if (signer <= previous) revert SignersNotAscending(i, signer);
            if (!isSigner[signer]) revert UnknownSigner(signer);
            previous = signer;
        }
    }

    /// @dev The hot loop of `submit` (I36): per entry, two calldata word reads, one cold slot
    /// read and one write of that slot, and a bit; everything else is the rare skip and reject
    /// paths. The first word read holds the account in its top 20 bytes, the second (ending
    /// where the entry ends) mm ‖ im ‖ positionNonce in its low 24 bytes; both lie inside
    /// `entries`, whose length `submit` checked is a whole number of entries.
    function _applyEntries(bytes calldata entries, uint64 sequence)
        internal
        returns (uint256[] memory appliedBits, uint256 applied)
    {
        uint256 count = entries.length / ENTRY_BYTES;
        appliedBits = new uint256[]((count + 255) / 256);
        for (uint256 i; i < count; ++i) {
            uint256 head;
            uint256 fields;
            assembly ("memory-safe") {
                let at := add(entries.offset, mul(i, ENTRY_BYTES))
                head := calldataload(at)
                fields := calldataload(add(at, 12))
            }
            address account = address(uint160(head >> 96));
            uint64 mmMicroUsd = uint64(fields >> 128);
            uint64 imMicroUsd = uint64(fields >> 64);
            AppliedEntry storage stored = _entries[account];
            uint64 appliedSequence = stored.sequence;
            if (sequence <= appliedSequence) {
                emit AttestationSkipped(account, sequence, appliedSequence);
                continue;
            }
            if (mmMicroUsd > imMicroUsd) {
                emit AttestationRejected(account, sequence, imMicroUsd, mmMicroUsd);
                continue;
            }
            // `AppliedEntry` packs its first field lowest: (mm ‖ im ‖ positionNonce ‖ sequence)
            // from high to low, which is `fields` shifted past the account's bytes, plus the
            // sequence. One SSTORE: a struct assignment would read and write the slot per field.
            uint256 slotValue = fields << 64 | sequence;
            assembly ("memory-safe") {
                sstore(stored.slot, slotValue)
                let word := add(add(appliedBits, 0x20), shl(5, shr(8, i)))
                mstore(word, or(mload(word), shl(and(i, 0xff), 1)))
            }
            unchecked {
                ++applied; // at most maxBatchSize (≤ 1000)
            }
        }
    }

    function _record(MarginBatch calldata batch, bytes32 digest, uint32 epoch) internal {
        BatchRecord storage r = _records[batch.sequence % RING_SIZE];
        // An older batch never evicts a newer one's record: its own entries are just not in force.
        if (r.sequence > batch.sequence) return;
        if (r.sequence == batch.sequence) {
            // Entries of one sequence may arrive in several batches only if they are the same batch.
            if (r.digest != digest) revert ConflictingBatch(batch.sequence, r.digest, digest);
            return;
        }
        r.sequence = batch.sequence;
        r.issuedAt = batch.issuedAt;
        r.keyEpoch = epoch;
        r.priceAssetMask = batch.priceAssetMask;
        r.digest = digest;
        uint256 k;
        for (uint256 mask = batch.priceAssetMask; mask != 0; mask &= mask - 1) {
            r.pricesE18[MarginMath.lowestBit(mask)] = batch.pricesE18[k++].toUint128();
        }
    }

    /// @dev Apart from `submit` to keep its stack shallow.
    function _emitBatchApplied(
        MarginBatch calldata batch,
        bytes32 digest,
        uint32 epoch,
        uint256[] memory appliedBits,
        uint256 applied,
        uint256 skipped
    ) internal {
        emit BatchApplied(
            batch.sequence,
            digest,
            batch.issuedAt,
            epoch,
            batch.priceAssetMask,
            batch.pricesE18,
            batch.entries,
            appliedBits,
            applied,
            skipped
        );
    }

    /// @dev EIP-712: `bytes entries` is hashed as keccak256 of its content, as the standard says.
    function _digest(MarginBatch calldata batch) internal view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    MARGIN_BATCH_TYPEHASH,
                    batch.sequence,
                    batch.issuedAt,
                    batch.priceAssetMask,
                    keccak256(abi.encodePacked(batch.pricesE18)),
                    keccak256(batch.entries)
                )
            )
        );
    }

    /// @dev The attested value, held within [floorBps, capBps] of the static one (B12).
    function _clamp(uint256 attestedWad, uint256 staticWad, Params memory p) internal pure returns (uint256) {
        uint256 floor = staticWad.mulDivUp(p.floorBps, MarginMath.BPS);
        uint256 cap = staticWad.mulDivDown(p.capBps, MarginMath.BPS);
        if (attestedWad < floor) return floor;
        if (attestedWad > cap) return cap;
        return attestedWad;
    }

    function _addSigner(address signer) internal {
        if (signer == address(0)) revert InvalidSigner(signer);
        if (isSigner[signer]) revert SignerAlreadyRegistered(signer);
        isSigner[signer] = true;
        signerCount += 1;
        uint32 epoch = ++_config.keyEpoch;
        emit SignerAdded(signer, epoch);
    }

    function _removeSigner(address signer) internal {
        if (!isSigner[signer]) revert SignerNotRegistered(signer);
        isSigner[signer] = false;
        signerCount -= 1;
        // A new epoch voids every attestation recorded under the old key set (B09).
        uint32 epoch = ++_config.keyEpoch;
        emit SignerRemoved(signer, epoch);
    }

    function _setThreshold(uint8 threshold_) internal {
        if (threshold_ == 0 || threshold_ > signerCount) revert InvalidThreshold(threshold_, signerCount);
        _config.threshold = threshold_;
        uint32 epoch = ++_config.keyEpoch;
        emit ThresholdSet(threshold_, epoch);
    }

    function _setParams(Params memory p) internal {
        // A floor of at least half the static requirement and a cap of at most 10x bound what any
        // quorum can do; maxAge of a day at most keeps "in sync" meaningful.
        if (
            p.maxAgeSeconds == 0 || p.maxAgeSeconds > 1 days || p.priceBandBps == 0 || p.priceBandBps > 2000
                || p.floorBps < 5000 || p.floorBps > MarginMath.BPS || p.capBps < MarginMath.BPS
                || p.capBps > 10 * MarginMath.BPS || p.maxBatchSize == 0 || p.maxBatchSize > 1000
        ) revert InvalidParams(p.maxAgeSeconds, p.priceBandBps, p.floorBps, p.capBps, p.maxBatchSize);
        _config.params = p;
        emit ParamsSet(p.maxAgeSeconds, p.priceBandBps, p.floorBps, p.capBps, p.maxBatchSize);
    }
}
