// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title ICommitteeRegistry
/// @notice The BLS12-381 committee that certifies cross-venue margin (ARCHITECTURE X1–X7): n
/// members' public keys, each registered with a proof of possession, and a threshold k. `verify`
/// checks one aggregate signature by ≥ k distinct members over a 32-byte message, for a cost that
/// does not grow with k (one hash to G1, one two-pair pairing, and min(s − 1, n − s) G2 additions
/// for s signers out of n, from a stored aggregate of all keys). A signer set used again and again
/// can be cached (`cacheSignerSet`, permissionless): its aggregate key is stored once, and every
/// certificate it signs then costs the same whatever k, with no G2 addition at all.
///
/// Scheme: minimal-signature-size BLS (signatures in G1, keys in G2), EIP-2537 encodings, hash
/// to G1 by RFC 9380 (BLS12381G1_XMD:SHA-256_SSWU_RO_) under `SIGNATURE_DST`. A proof of
/// possession is the key's signature over its own 256-byte encoding under `POP_DST`.
///
/// Members are numbered 0..n−1; bit i of a signer bitmap is member i. Every change of the key set
/// or the threshold starts a new key epoch, and removals move the last member into the freed
/// index, so a bitmap means something only within its epoch. `verify` returns the epoch it
/// checked against: a consumer records it and stops trusting what it certified as soon as
/// `keyEpoch()` moves on (rotation and removal take effect at once, K4).
///
/// Trust assumptions: fewer than k members' secret keys are compromised; the owner registers only
/// members it vouches for (a proof of possession shows a key's holder knows its secret, not that
/// the holder is honest). Proofs of possession make rogue keys (a key chosen to cancel others in
/// the aggregate) unregistrable (K1, THREATS G05). The message must bind everything a consumer
/// relies on (chain id, consumer address, sequence): the registry signs no domain of its own, so
/// one certificate can be verified on every linked venue.
interface ICommitteeRegistry {
    // ================================================================ ERRORS
    /// @notice The key is not 256 bytes, not canonical, not on the curve, not in the subgroup,
    /// or the point at infinity.
    error InvalidPublicKey(bytes publicKey);
    /// @notice The proof does not show possession of the key's secret (or is malformed).
    error InvalidProofOfPossession(bytes publicKey, bytes proof);
    error KeyAlreadyRegistered(bytes32 keyHash, uint256 index);
    error KeysAndProofsMismatch(uint256 keys, uint256 proofs);
    error CommitteeFull(uint256 memberCount, uint256 maxMembers);
    error MemberIndexOutOfRange(uint256 index, uint256 memberCount);
    error ThresholdOutOfRange(uint256 threshold, uint256 memberCount);
    /// @notice The bitmap names members beyond the committee.
    error UnknownSigners(uint256 signerBitmap, uint256 memberCount);
    error TooFewSigners(uint256 signers, uint256 threshold);
    error SignatureLengthMismatch(uint256 length, uint256 expected);
    /// @notice The signature is not a canonical G1 subgroup point (the pairing refused it).
    error MalformedSignature(bytes signature);
    /// @notice The signers' keys sum to the point at infinity, which would verify an empty signature.
    error AggregateKeyIsInfinity(uint256 signerBitmap);
    error InvalidSignature(bytes32 message, uint256 signerBitmap);

    // ================================================================ EVENTS
    /// @notice `publicKey` is member `index` from `keyEpoch` on (appended at the end).
    event MemberAdded(uint256 indexed index, bytes32 indexed keyHash, bytes publicKey, uint32 keyEpoch);
    /// @notice Member `index` left; the member that was last (`movedFrom`) now has `index`
    /// (`movedFrom == index` when the last member left).
    event MemberRemoved(uint256 indexed index, bytes32 indexed keyHash, uint256 movedFrom, uint32 keyEpoch);
    /// @notice Member `index` now signs with `publicKey`; the old key stops counting at once.
    event MemberRotated(
        uint256 indexed index, bytes32 indexed oldKeyHash, bytes32 indexed newKeyHash, bytes publicKey, uint32 keyEpoch
    );
    event ThresholdSet(uint256 threshold, uint32 keyEpoch);
    /// @notice The aggregate key of `signerBitmap`'s members under `keyEpoch` is kept in the code
    /// of `keyStore`; `verify` uses it for that bitmap until the key epoch moves on.
    event SignerSetCached(uint256 indexed signerBitmap, uint32 indexed keyEpoch, address keyStore);

    // ================================================================ VERIFY
    /// @notice Reverts unless `signature` is the aggregate signature over `message` of the
    /// members set in `signerBitmap`, at least `threshold` of them, under the current key set.
    /// @param message 32 bytes, hashed to G1 under `SIGNATURE_DST`.
    /// @param signerBitmap Bit i set for member i; no bits at or beyond `memberCount`.
    /// @param signature 128 bytes: the sum of the signers' G1 signatures, EIP-2537 encoded.
    /// @return keyEpoch The key epoch the signature was checked against.
    function verify(bytes32 message, uint256 signerBitmap, bytes calldata signature)
        external
        view
        returns (uint32 keyEpoch);

    /// @notice Stores the aggregate key of `signerBitmap`'s members (at least `threshold` of
    /// them) for the current key epoch, so that `verify` for this bitmap reads it instead of
    /// adding keys. Permissionless: the aggregate is computed here from the registered keys.
    /// Idempotent. A new key epoch makes every cached set unused.
    /// @return keyStore Where the aggregate key is kept (CodeData).
    function cacheSignerSet(uint256 signerBitmap) external returns (address keyStore);

    // ================================================================ ADMIN (owner)
    /// @notice Appends members, each key with its proof of possession; one new key epoch.
    function addMembers(bytes[] calldata publicKeys, bytes[] calldata proofs) external;

    /// @notice Removes member `index`; the last member takes its index. The threshold must stay
    /// ≤ the remaining members.
    function removeMember(uint256 index) external;

    /// @notice Replaces member `index`'s key (with the new key's proof of possession).
    function rotateMember(uint256 index, bytes calldata publicKey, bytes calldata proof) external;

    function setThreshold(uint8 threshold) external;

    // ================================================================ VIEWS
    function memberCount() external view returns (uint256);

    function threshold() external view returns (uint8);

    function keyEpoch() external view returns (uint32);

    /// @notice Member `index`'s 256-byte public key.
    function publicKey(uint256 index) external view returns (bytes memory);

    /// @notice Where the cached aggregate key of `signerBitmap` for the current epoch is kept, or
    /// address(0) when it is not cached.
    function cachedSignerSet(uint256 signerBitmap) external view returns (address);

    /// @notice Every member's key, concatenated in index order (256 bytes each).
    function publicKeys() external view returns (bytes memory);

    /// @notice The sum of all members' keys (the stored aggregate `verify` starts from).
    function aggregatePublicKey() external view returns (bytes memory);

    /// @notice The most members a committee may have (the width of a bitmap `verify` accepts).
    function MAX_MEMBERS() external view returns (uint256);

    function SIGNATURE_DST() external view returns (bytes memory);

    function POP_DST() external view returns (bytes memory);
}
