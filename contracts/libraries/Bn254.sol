// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Bn254
/// @notice The EIP-196/197 precompiles (BN254 addition, scalar multiplication, pairing check) and
/// their byte layouts, in one place. A G1 point is (x, y); a G2 point is (x.c1, x.c0, y.c1, y.c0),
/// the imaginary part first as EIP-197 wants (py-ecc and snarkjs's JSON hold (c0, c1): the Python
/// side swaps them in offchain/prove/bn254.py). The point at infinity is (0, 0). Every function
/// returns `ok = false` instead of reverting when the precompile refuses its input (a coordinate
/// ≥ Q, a point off the curve or, for G2, outside the prime-order subgroup).
library Bn254 {
    /// @dev The base field modulus.
    uint256 internal constant Q =
        21_888_242_871_839_275_222_246_405_745_257_275_088_696_311_157_297_823_662_689_037_894_645_226_208_583;
    /// @dev The scalar field modulus (the group order).
    uint256 internal constant R =
        21_888_242_871_839_275_222_246_405_745_257_275_088_548_364_400_416_034_343_698_204_186_575_808_495_617;

    uint256 internal constant EC_ADD = 0x06;
    uint256 internal constant EC_MUL = 0x07;
    uint256 internal constant EC_PAIRING = 0x08;

    /// @dev p + q (EIP-196, 150 gas).
    function add(uint256[2] memory p, uint256[2] memory q) internal view returns (bool ok, uint256[2] memory sum) {
        uint256[4] memory input = [p[0], p[1], q[0], q[1]];
        assembly ("memory-safe") {
            ok := staticcall(gas(), EC_ADD, input, 0x80, sum, 0x40)
        }
    }

    /// @dev s·p (EIP-196, 6,000 gas).
    function mul(uint256[2] memory p, uint256 s) internal view returns (bool ok, uint256[2] memory product) {
        uint256[3] memory input = [p[0], p[1], s];
        assembly ("memory-safe") {
            ok := staticcall(gas(), EC_MUL, input, 0x60, product, 0x40)
        }
    }

    /// @dev −p: (x, Q − y), and the point at infinity for itself.
    function negate(uint256[2] memory p) internal pure returns (uint256[2] memory) {
        if (p[0] == 0 && p[1] == 0) return p;
        return [p[0], Q - (p[1] % Q)];
    }

    /// @dev Whether Π e(g1[i], g2[i]) = 1 (EIP-197: 45,000 + 34,000 per pair). `pairs` holds, per
    /// pair, the G1 point's 2 words then the G2 point's 4.
    function pairingCheck(uint256[] memory pairs) internal view returns (bool ok) {
        uint256 length = pairs.length * 32;
        uint256[1] memory result;
        bool success;
        assembly ("memory-safe") {
            success := staticcall(gas(), EC_PAIRING, add(pairs, 0x20), length, result, 0x20)
        }
        return success && result[0] == 1;
    }
}
