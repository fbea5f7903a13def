// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IGroth16Verifier} from "../interfaces/IGroth16Verifier.sol";
import {Bn254} from "../libraries/Bn254.sol";

/// @title Groth16Verifier
/// @notice Groth16 over BN254 with the verification key taken at deployment (see IGroth16Verifier).
/// @dev The fixed points live in immutables; the input weights (IC), whose number depends on the
/// circuit, are the code of a data contract created by the constructor and read with one
/// EXTCODECOPY (cheaper than storage: 2,600 gas plus 3 per word instead of 2,100 per word).
contract Groth16Verifier is IGroth16Verifier {
    // ================================================================ STORAGE
    uint256 internal immutable ALPHA_X;
    uint256 internal immutable ALPHA_Y;
    uint256 internal immutable BETA_X1;
    uint256 internal immutable BETA_X0;
    uint256 internal immutable BETA_Y1;
    uint256 internal immutable BETA_Y0;
    uint256 internal immutable GAMMA_X1;
    uint256 internal immutable GAMMA_X0;
    uint256 internal immutable GAMMA_Y1;
    uint256 internal immutable GAMMA_Y0;
    uint256 internal immutable DELTA_X1;
    uint256 internal immutable DELTA_X0;
    uint256 internal immutable DELTA_Y1;
    uint256 internal immutable DELTA_Y0;
    address internal immutable IC_DATA;
    uint256 internal immutable INPUTS;

    // ================================================================ CONSTRUCTOR
    constructor(VerifyingKey memory vk) {
        if (vk.ic.length < 4 || vk.ic.length % 2 != 0) revert InvalidVerifyingKey(vk.ic.length);
        (ALPHA_X, ALPHA_Y) = (vk.alpha1[0], vk.alpha1[1]);
        (BETA_X1, BETA_X0, BETA_Y1, BETA_Y0) = (vk.beta2[0], vk.beta2[1], vk.beta2[2], vk.beta2[3]);
        (GAMMA_X1, GAMMA_X0, GAMMA_Y1, GAMMA_Y0) = (vk.gamma2[0], vk.gamma2[1], vk.gamma2[2], vk.gamma2[3]);
        (DELTA_X1, DELTA_X0, DELTA_Y1, DELTA_Y0) = (vk.delta2[0], vk.delta2[1], vk.delta2[2], vk.delta2[3]);
        INPUTS = vk.ic.length / 2 - 1;
        IC_DATA = _storeAsCode(abi.encodePacked(vk.ic));
    }

    // ================================================================ VIEWS
    /// @inheritdoc IGroth16Verifier
    function verifyProof(uint256[8] calldata proof, uint256[] calldata input) external view returns (bool) {
        uint256 n = INPUTS;
        if (input.length != n) return false;
        uint256[] memory ic = new uint256[](2 * (n + 1));
        address data = IC_DATA;
        assembly ("memory-safe") {
            // Skip the data contract's leading STOP byte.
            extcodecopy(data, add(ic, 0x20), 1, mul(0x40, add(n, 1)))
        }
        // vk_x = IC[0] + Σ input[i]·IC[i + 1]
        uint256[2] memory vkX = [ic[0], ic[1]];
        for (uint256 i; i < n; ++i) {
            if (input[i] >= Bn254.R) return false;
            (bool okMul, uint256[2] memory term) = Bn254.mul([ic[2 * i + 2], ic[2 * i + 3]], input[i]);
            bool okAdd;
            (okAdd, vkX) = Bn254.add(vkX, term);
            if (!okMul || !okAdd) return false;
        }
        if (proof[1] >= Bn254.Q) return false;
        uint256[2] memory negA = Bn254.negate([proof[0], proof[1]]);
        // e(−A, B) · e(α, β) · e(vk_x, γ) · e(C, δ) = 1
        uint256[] memory pairs = new uint256[](24);
        (pairs[0], pairs[1]) = (negA[0], negA[1]);
        (pairs[2], pairs[3], pairs[4], pairs[5]) = (proof[2], proof[3], proof[4], proof[5]);
        (pairs[6], pairs[7]) = (ALPHA_X, ALPHA_Y);
        (pairs[8], pairs[9], pairs[10], pairs[11]) = (BETA_X1, BETA_X0, BETA_Y1, BETA_Y0);
        (pairs[12], pairs[13]) = (vkX[0], vkX[1]);
        (pairs[14], pairs[15], pairs[16], pairs[17]) = (GAMMA_X1, GAMMA_X0, GAMMA_Y1, GAMMA_Y0);
        (pairs[18], pairs[19]) = (proof[6], proof[7]);
        (pairs[20], pairs[21], pairs[22], pairs[23]) = (DELTA_X1, DELTA_X0, DELTA_Y1, DELTA_Y0);
        return Bn254.pairingCheck(pairs);
    }

    /// @inheritdoc IGroth16Verifier
    function publicInputCount() external view returns (uint256) {
        return INPUTS;
    }

    // ================================================================ INTERNAL
    /// @dev Deploys `data` as the runtime code of a new contract, behind a STOP byte so that
    /// calling it does nothing. Init code: PUSH2 size, DUP1, PUSH1 0x0c, PUSH1 0, CODECOPY,
    /// PUSH1 0, RETURN (12 bytes), then the code.
    function _storeAsCode(bytes memory data) internal returns (address pointer) {
        bytes memory code = abi.encodePacked(hex"00", data);
        bytes memory init = abi.encodePacked(hex"61", uint16(code.length), hex"80600c6000396000f3", code);
        assembly ("memory-safe") {
            pointer := create(0, add(init, 0x20), mload(init))
        }
        if (pointer == address(0)) revert InvalidVerifyingKey(data.length / 32);
    }
}
