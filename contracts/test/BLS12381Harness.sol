// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BLS12381} from "../libraries/BLS12381.sol";

/// @notice Test-only: the BLS12381 library's functions as external calls, for parity tests
/// against the Python implementation and the precompiles.
contract BLS12381Harness {
    function expandMessageXmd(bytes memory message, bytes memory dst) external view returns (bytes32[4] memory) {
        return BLS12381.expandMessageXmd(message, dst);
    }

    function reduceModP(bytes32 hi, bytes32 lo) external view returns (bytes memory) {
        return BLS12381.reduceModP(hi, lo);
    }

    function mapFpToG1(bytes memory fp) external view returns (bytes memory) {
        return BLS12381.mapFpToG1(fp);
    }

    function hashToG1(bytes memory message, bytes memory dst) external view returns (bytes memory) {
        return BLS12381.hashToG1(message, dst);
    }

    function g1Add(bytes memory a, bytes memory b) external view returns (bytes memory) {
        return BLS12381.g1Add(a, b);
    }

    function g2Add(bytes memory a, bytes memory b) external view returns (bytes memory) {
        return BLS12381.g2Add(a, b);
    }

    function negateG2(bytes memory point) external pure returns (bytes memory) {
        uint256 ptr;
        assembly ("memory-safe") {
            ptr := add(point, 32)
        }
        BLS12381.negateG2At(ptr);
        return point;
    }

    function isG2Point(bytes memory point) external view returns (bool) {
        return BLS12381.isG2Point(point);
    }

    function verifyPairing(bytes memory signature, bytes memory hashed, bytes memory publicKey)
        external
        view
        returns (bool ok, bool valid)
    {
        return BLS12381.verifyPairing(signature, hashed, publicKey);
    }
}
