// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ICommitteeRegistry} from "./interfaces/ICommitteeRegistry.sol";
import {BLS12381} from "./libraries/BLS12381.sol";
import {CodeData} from "./libraries/CodeData.sol";

/// @title CommitteeRegistry
/// @notice The BLS12-381 committee's keys and its k-of-n aggregate check (see ICommitteeRegistry).
contract CommitteeRegistry is ICommitteeRegistry, Ownable2Step {
    // ================================================================ STORAGE
    /// @inheritdoc ICommitteeRegistry
    uint256 public constant MAX_MEMBERS = 64;
    /// @inheritdoc ICommitteeRegistry
    bytes public constant SIGNATURE_DST = "MARGINSYNC-V01-BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_";
    /// @inheritdoc ICommitteeRegistry
    bytes public constant POP_DST = "MARGINSYNC-V01-BLS_POP_BLS12381G1_XMD:SHA-256_SSWU_RO_POP_";

    uint256 internal constant KEY_BYTES = 256; // BLS12381.G2_BYTES (assembly needs a literal)
    uint256 internal constant SIGNATURE_BYTES = 128; // BLS12381.G1_BYTES

    /// @dev Everything `verify` reads from storage, in one slot. `keys` is a CodeData blob: the
    /// aggregate of all keys, then key 0, key 1, … (256 bytes each), rewritten on every change.
    struct Committee {
        address keys;
        uint8 memberCount;
        uint8 threshold;
        uint32 keyEpoch;
    }

    Committee internal _committee;
    /// @dev keccak256(keyEpoch, signerBitmap) → CodeData holding that set's aggregate key.
    mapping(bytes32 epochAndBitmap => address keyStore) internal _signerSets;

    // ================================================================ CONSTRUCTOR
    constructor(address owner_, bytes[] memory publicKeys_, bytes[] memory proofs, uint8 threshold_) Ownable(owner_) {
        _addMembers(publicKeys_, proofs);
        _setThreshold(threshold_);
    }

    // ================================================================ EXTERNAL
    /// @inheritdoc ICommitteeRegistry
    function verify(bytes32 message, uint256 signerBitmap, bytes calldata signature)
        external
        view
        returns (uint32 keyEpoch_)
    {
        Committee memory c = _committee;
        if (signature.length != SIGNATURE_BYTES) revert SignatureLengthMismatch(signature.length, SIGNATURE_BYTES);
        address cached = _signerSets[_signerSetId(c.keyEpoch, signerBitmap)];
        bytes memory signersKey;
        if (cached != address(0)) {
            // Checked (bitmap, quorum, infinity) when it was cached, under this very epoch.
            signersKey = CodeData.read(cached, 0, KEY_BYTES);
        } else {
            signersKey = _checkedSignersKey(c, signerBitmap);
        }
        bytes memory hashed = BLS12381.hashToG1(abi.encodePacked(message), SIGNATURE_DST);
        (bool wellFormed, bool valid) = BLS12381.verifyPairing(signature, hashed, signersKey);
        if (!wellFormed) revert MalformedSignature(signature);
        if (!valid) revert InvalidSignature(message, signerBitmap);
        return c.keyEpoch;
    }

    /// @inheritdoc ICommitteeRegistry
    function cacheSignerSet(uint256 signerBitmap) external returns (address keyStore) {
        Committee memory c = _committee;
        bytes32 id = _signerSetId(c.keyEpoch, signerBitmap);
        keyStore = _signerSets[id];
        if (keyStore != address(0)) return keyStore;
        keyStore = CodeData.write(_checkedSignersKey(c, signerBitmap));
        _signerSets[id] = keyStore;
        emit SignerSetCached(signerBitmap, c.keyEpoch, keyStore);
    }

    // ================================================================ ADMIN
    /// @inheritdoc ICommitteeRegistry
    function addMembers(bytes[] calldata publicKeys_, bytes[] calldata proofs) external onlyOwner {
        _addMembers(publicKeys_, proofs);
    }

    /// @inheritdoc ICommitteeRegistry
    function removeMember(uint256 index) external onlyOwner {
        Committee memory c = _committee;
        uint256 n = c.memberCount;
        if (index >= n) revert MemberIndexOutOfRange(index, n);
        if (n - 1 < c.threshold) revert ThresholdOutOfRange(c.threshold, n - 1);
        bytes memory blob = CodeData.read(c.keys, 0, KEY_BYTES * (n + 1));
        bytes memory key = _slice(blob, _offset(index));
        _accumulate(blob, key, true);
        uint256 last = n - 1;
        if (index != last) _put(blob, _offset(index), _slice(blob, _offset(last)));
        assembly ("memory-safe") {
            mstore(blob, mul(KEY_BYTES, n)) // drop the last slot
        }
        uint32 epoch = _store(blob, last, c.keyEpoch);
        emit MemberRemoved(index, keccak256(key), last, epoch);
    }

    /// @inheritdoc ICommitteeRegistry
    function rotateMember(uint256 index, bytes calldata publicKey_, bytes calldata proof) external onlyOwner {
        Committee memory c = _committee;
        uint256 n = c.memberCount;
        if (index >= n) revert MemberIndexOutOfRange(index, n);
        bytes memory blob = CodeData.read(c.keys, 0, KEY_BYTES * (n + 1));
        _checkNewKey(blob, n, publicKey_, proof);
        bytes memory old = _slice(blob, _offset(index));
        _accumulate(blob, old, true);
        _accumulate(blob, publicKey_, false);
        _put(blob, _offset(index), publicKey_);
        uint32 epoch = _store(blob, n, c.keyEpoch);
        emit MemberRotated(index, keccak256(old), keccak256(publicKey_), publicKey_, epoch);
    }

    /// @inheritdoc ICommitteeRegistry
    function setThreshold(uint8 threshold_) external onlyOwner {
        _setThreshold(threshold_);
    }

    // ================================================================ VIEWS
    /// @inheritdoc ICommitteeRegistry
    function memberCount() external view returns (uint256) {
        return _committee.memberCount;
    }

    /// @inheritdoc ICommitteeRegistry
    function threshold() external view returns (uint8) {
        return _committee.threshold;
    }

    /// @inheritdoc ICommitteeRegistry
    function keyEpoch() external view returns (uint32) {
        return _committee.keyEpoch;
    }

    /// @inheritdoc ICommitteeRegistry
    function publicKey(uint256 index) external view returns (bytes memory) {
        Committee memory c = _committee;
        if (index >= c.memberCount) revert MemberIndexOutOfRange(index, c.memberCount);
        return CodeData.read(c.keys, _offset(index), KEY_BYTES);
    }

    /// @inheritdoc ICommitteeRegistry
    function cachedSignerSet(uint256 signerBitmap) external view returns (address) {
        return _signerSets[_signerSetId(_committee.keyEpoch, signerBitmap)];
    }

    /// @inheritdoc ICommitteeRegistry
    function publicKeys() external view returns (bytes memory) {
        Committee memory c = _committee;
        return CodeData.read(c.keys, KEY_BYTES, KEY_BYTES * c.memberCount);
    }

    /// @inheritdoc ICommitteeRegistry
    function aggregatePublicKey() external view returns (bytes memory) {
        return CodeData.read(_committee.keys, 0, KEY_BYTES);
    }

    // ================================================================ INTERNAL
    /// @dev K2 and K3: the bitmap names members only, at least `threshold` of them, whose keys do
    /// not cancel out; their aggregate key.
    function _checkedSignersKey(Committee memory c, uint256 signerBitmap) internal view returns (bytes memory key) {
        if (signerBitmap >> c.memberCount != 0) revert UnknownSigners(signerBitmap, c.memberCount);
        uint256 signers = _popCount64(signerBitmap); // < 2^64: checked just above
        if (signers < c.threshold) revert TooFewSigners(signers, c.threshold);
        key = _signersKey(c, signerBitmap, signers);
        if (_isZero(key)) revert AggregateKeyIsInfinity(signerBitmap);
    }

    function _signerSetId(uint32 epoch, uint256 signerBitmap) internal pure returns (bytes32) {
        return keccak256(abi.encode(epoch, signerBitmap));
    }

    /// @dev The signers' aggregate key: the cheaper of summing the signers' keys (s − 1 G2
    /// additions) and taking the non-signers' keys out of the stored aggregate (n − s), so a
    /// certificate never pays more than n/2 additions. Keys go straight from the blob into an
    /// [accumulator ‖ operand] buffer that G2ADD reads and overwrites in place.
    function _signersKey(Committee memory c, uint256 signerBitmap, uint256 signers)
        internal
        view
        returns (bytes memory buffer)
    {
        address keys = c.keys;
        uint256 n = c.memberCount;
        bool subtract = signers - 1 > n - signers;
        uint256 walk = subtract ? signerBitmap ^ ((1 << n) - 1) : signerBitmap;
        buffer = new bytes(2 * KEY_BYTES);
        uint256 acc;
        assembly ("memory-safe") {
            acc := add(buffer, 32)
        }
        if (subtract) CodeData.copyTo(keys, 0, KEY_BYTES, acc);
        BLS12381.accumulateG2FromCode(keys, CodeData.DATA_OFFSET + KEY_BYTES, walk, subtract, acc, !subtract);
        assembly ("memory-safe") {
            mstore(buffer, KEY_BYTES) // the accumulator alone
        }
    }

    /// @dev Set bits of a bitmap below 2^64 (SWAR: a few dozen gas where a bit loop costs
    /// thousands for a full committee).
    function _popCount64(uint256 x) internal pure returns (uint256) {
        unchecked {
            x -= (x >> 1) & 0x5555555555555555;
            x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333);
            x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0f;
            return ((x * 0x0101010101010101) >> 56) & 0xff;
        }
    }

    function _addMembers(bytes[] memory keys, bytes[] memory proofs) internal {
        if (keys.length != proofs.length) revert KeysAndProofsMismatch(keys.length, proofs.length);
        Committee memory c = _committee;
        uint256 n = c.memberCount;
        uint256 total = n + keys.length;
        if (total > MAX_MEMBERS) revert CommitteeFull(total, MAX_MEMBERS);
        bytes memory blob = new bytes(KEY_BYTES * (total + 1)); // an all-zero aggregate is infinity
        if (c.keys != address(0)) {
            bytes memory existing = CodeData.read(c.keys, 0, KEY_BYTES * (n + 1));
            _put(blob, 0, existing);
        }
        uint32 epoch = c.keyEpoch + 1;
        for (uint256 j; j < keys.length; ++j) {
            _checkNewKey(blob, n + j, keys[j], proofs[j]);
            _accumulate(blob, keys[j], false);
            _put(blob, _offset(n + j), keys[j]);
            emit MemberAdded(n + j, keccak256(keys[j]), keys[j], epoch);
        }
        _store(blob, total, c.keyEpoch);
    }

    /// @dev K1: a canonical subgroup key, not infinity, not registered yet, with a valid proof of
    /// possession (its secret's signature over its own encoding under POP_DST).
    function _checkNewKey(bytes memory blob, uint256 count, bytes memory key, bytes memory proof) internal view {
        if (key.length != KEY_BYTES || _isZero(key) || !BLS12381.isG2Point(key)) revert InvalidPublicKey(key);
        bytes32 keyHash = keccak256(key);
        for (uint256 i; i < count; ++i) {
            if (keccak256(_slice(blob, _offset(i))) == keyHash) revert KeyAlreadyRegistered(keyHash, i);
        }
        if (proof.length != SIGNATURE_BYTES) revert InvalidProofOfPossession(key, proof);
        (bool wellFormed, bool valid) = BLS12381.verifyPairing(proof, BLS12381.hashToG1(key, POP_DST), key);
        if (!wellFormed || !valid) revert InvalidProofOfPossession(key, proof);
    }

    /// @dev The stored aggregate (the blob's first slot) plus or minus `key` (K5).
    function _accumulate(bytes memory blob, bytes memory key, bool subtract) internal view {
        bytes memory operand = bytes.concat(key);
        if (subtract) {
            uint256 ptr;
            assembly ("memory-safe") {
                ptr := add(operand, 32)
            }
            BLS12381.negateG2At(ptr);
        }
        _put(blob, 0, BLS12381.g2Add(_slice(blob, 0), operand));
    }

    /// @dev Writes the new blob and starts a new key epoch (K4).
    function _store(bytes memory blob, uint256 count, uint32 previousEpoch) internal returns (uint32 epoch) {
        epoch = previousEpoch + 1;
        _committee.keys = CodeData.write(blob);
        _committee.memberCount = uint8(count);
        _committee.keyEpoch = epoch;
    }

    function _setThreshold(uint8 threshold_) internal {
        uint256 n = _committee.memberCount;
        if (threshold_ == 0 || threshold_ > n) revert ThresholdOutOfRange(threshold_, n);
        _committee.threshold = threshold_;
        uint32 epoch = ++_committee.keyEpoch;
        emit ThresholdSet(threshold_, epoch);
    }

    function _offset(uint256 index) internal pure returns (uint256) {
        return KEY_BYTES * (index + 1);
    }

    function _slice(bytes memory blob, uint256 offset) internal pure returns (bytes memory out) {
        out = new bytes(KEY_BYTES);
        assembly ("memory-safe") {
            mcopy(add(out, 32), add(add(blob, 32), offset), KEY_BYTES)
        }
    }

    function _put(bytes memory blob, uint256 offset, bytes memory data) internal pure {
        assembly ("memory-safe") {
            mcopy(add(add(blob, 32), offset), add(data, 32), mload(data))
        }
    }

    function _isZero(bytes memory point) internal pure returns (bool zero) {
        zero = true;
        for (uint256 i; i < point.length; i += 32) {
            if (bytes32(_word(point, i)) != 0) return false;
        }
    }

    function _word(bytes memory data, uint256 offset) private pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := mload(add(add(data, 32), offset))
        }
    }
}
