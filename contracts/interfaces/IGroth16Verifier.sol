// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IGroth16Verifier
/// @notice Verifies Groth16 proofs over BN254 for one circuit, whose verification key is given at
/// deployment: the development ceremony runs on each machine (docs/proofs.md), so no key is ever
/// compiled into source. Points use the EIP-197 layout of `Bn254` (G2: imaginary part first).
///
/// Trust assumption: the key comes from a setup whose secrets nobody kept. The development
/// ceremony's secrets existed in one process on the build machine; production keys come from a
/// multi-party ceremony.
interface IGroth16Verifier {
    /// @param ic 2·(n + 1) words: the n + 1 G1 points that weigh the constant 1 and the n inputs.
    struct VerifyingKey {
        uint256[2] alpha1;
        uint256[4] beta2;
        uint256[4] gamma2;
        uint256[4] delta2;
        uint256[] ic;
    }

    error InvalidVerifyingKey(uint256 icWords);

    /// @notice Whether `proof` = (A.x, A.y, B.x.c1, B.x.c0, B.y.c1, B.y.c0, C.x, C.y) proves the
    /// circuit's statement for `input`. False, never a revert, for a malformed proof, a point
    /// off the curve, an input count other than the key's or an input ≥ the scalar field modulus.
    function verifyProof(uint256[8] calldata proof, uint256[] calldata input) external view returns (bool);

    /// @notice The number of public inputs the circuit takes.
    function publicInputCount() external view returns (uint256);
}
