// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title BLS12381
/// @notice BLS12-381 on the EIP-2537 precompiles: the byte layout, hash to G1 (RFC 9380), G2
/// negation and the pairing check. The one Solidity module that knows the encodings (mirrored by
/// `offchain/committee/eip2537.py`):
/// - an Fp element is 64 bytes big-endian, its top 16 bytes zero and its value below p;
/// - an Fp2 element c0 + c1·u is c0 ‖ c1 (EIP-197's BN254 G2 orders them the other way);
/// - G1 = x ‖ y (128 bytes), G2 = x ‖ y over Fp2 (256 bytes); all zeros is the point at infinity.
/// The precompiles refuse non-canonical elements and points off the curve; MSM and PAIRING also
/// refuse points outside the prime-order subgroup, additions do not (callers add only points
/// that were checked on the way in).
library BLS12381 {
    address internal constant G1ADD = address(0x0b);
    address internal constant G2ADD = address(0x0d);
    address internal constant G2MSM = address(0x0e);
    address internal constant PAIRING = address(0x0f);
    address internal constant MAP_FP_TO_G1 = address(0x10);
    address internal constant MODEXP = address(0x05);

    uint256 internal constant FP_BYTES = 64;
    uint256 internal constant G1_BYTES = 128;
    uint256 internal constant G2_BYTES = 256;
    /// @dev RFC 9380 expand_message_xmd output for two G1 field elements (L = 64 bytes each).
    uint256 internal constant XMD_BYTES = 128;

    /// @dev The field modulus p in its 64-byte encoding, as two words.
    uint256 internal constant P_HI = 0x1a0111ea397fe69a4b1ba7b6434bacd7;
    uint256 internal constant P_LO = 0x64774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab;

    /// @dev −g2, the negated G2 generator: e(σ, −g2)·e(H(m), pk) = 1 verifies σ = sk·H(m).
    bytes internal constant NEG_G2_GENERATOR = hex"00000000000000000000000000000000024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8"
        hex"0000000000000000000000000000000013e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e"
        hex"000000000000000000000000000000000d1b3cc2c7027888be51d9ef691d77bcb679afda66c73f17f9ee3837a55024f78c71363275a75d75d86bab79f74782aa"
        hex"0000000000000000000000000000000013fa4d4a0ad8b1ce186ed5061789213d993923066dddaf1040bc3ff59f825c78df74f2d75467e25e0f55f8a00fa030ed";

    /// @notice A precompile refused its input (a non-canonical or invalid point) or is missing.
    error PrecompileFailed(address precompile);
    /// @notice RFC 9380 caps a domain separation tag at 255 bytes.
    error DstTooLong(uint256 length);

    // ================================================================ HASH TO CURVE
    /// @notice RFC 9380 hash_to_curve, suite BLS12381G1_XMD:SHA-256_SSWU_RO_, with tag `dst`:
    /// expand_message_xmd (SHA-256 precompile), two field elements reduced mod p (MODEXP),
    /// each mapped by MAP_FP_TO_G1 (which clears the cofactor), then added.
    function hashToG1(bytes memory message, bytes memory dst) internal view returns (bytes memory) {
        bytes32[4] memory uniform = expandMessageXmd(message, dst);
        bytes memory q0 = mapFpToG1(reduceModP(uniform[0], uniform[1]));
        bytes memory q1 = mapFpToG1(reduceModP(uniform[2], uniform[3]));
        return g1Add(q0, q1);
    }

    /// @notice RFC 9380 expand_message_xmd with SHA-256 and len_in_bytes = 128, as four words.
    function expandMessageXmd(bytes memory message, bytes memory dst)
        internal
        view
        returns (bytes32[4] memory uniform)
    {
        if (dst.length > 255) revert DstTooLong(dst.length);
        bytes memory dstPrime = abi.encodePacked(dst, uint8(dst.length));
        // Z_pad is one SHA-256 block (64 zero bytes); then the message, I2OSP(128, 2) and I2OSP(0, 1).
        bytes32 b0 = sha256(abi.encodePacked(bytes32(0), bytes32(0), message, uint16(XMD_BYTES), uint8(0), dstPrime));
        uniform[0] = sha256(abi.encodePacked(b0, uint8(1), dstPrime));
        for (uint256 i = 1; i < 4; ++i) {
            uniform[i] = sha256(abi.encodePacked(b0 ^ uniform[i - 1], uint8(i + 1), dstPrime));
        }
    }

    /// @notice (hi ‖ lo) mod p as a 64-byte field element, by the MODEXP precompile (exponent 1).
    function reduceModP(bytes32 hi, bytes32 lo) internal view returns (bytes memory fp) {
        bytes memory input = abi.encodePacked(uint256(64), uint256(1), uint256(64), hi, lo, uint8(1), P_HI, P_LO);
        fp = new bytes(FP_BYTES);
        _call(MODEXP, input, fp);
    }

    function mapFpToG1(bytes memory fp) internal view returns (bytes memory point) {
        point = new bytes(G1_BYTES);
        _call(MAP_FP_TO_G1, fp, point);
    }

    // ================================================================ GROUP OPERATIONS
    function g1Add(bytes memory a, bytes memory b) internal view returns (bytes memory sum) {
        sum = new bytes(G1_BYTES);
        _call(G1ADD, bytes.concat(a, b), sum);
    }

    function g2Add(bytes memory a, bytes memory b) internal view returns (bytes memory sum) {
        sum = new bytes(G2_BYTES);
        _call(G2ADD, bytes.concat(a, b), sum);
    }

    /// @notice Whether `point` is a canonical G2 point on the curve and in the prime-order
    /// subgroup (G2MSM by 1 checks all three; the point at infinity passes).
    function isG2Point(bytes memory point) internal view returns (bool) {
        if (point.length != G2_BYTES) return false;
        (bool ok, bytes memory out) = G2MSM.staticcall(bytes.concat(point, bytes32(uint256(1))));
        return ok && out.length == G2_BYTES;
    }

    /// @notice −point for a G2 point already in memory at `ptr` (256 bytes): y ↦ p − y per Fp
    /// component, 0 staying 0. Assumes canonical coordinates.
    function negateG2At(uint256 ptr) internal pure {
        assembly ("memory-safe") {
            for { let c := add(ptr, 128) } lt(c, add(ptr, 256)) { c := add(c, 64) } {
                let hi := mload(c)
                let lo := mload(add(c, 32))
                if or(hi, lo) {
                    mstore(c, sub(sub(P_HI, hi), lt(P_LO, lo)))
                    mstore(add(c, 32), sub(P_LO, lo))
                }
            }
        }
    }

    /// @notice Adds to the G2 point at memory `acc` the 256-byte points kept in `source`'s code
    /// at `codeOffset + 256·i` for every bit i of `mask`, each negated first when `negate`. With
    /// `empty`, the first selected point is copied into `acc` instead of added. `acc` must be
    /// followed by 256 bytes of scratch memory. The per-signer hot path of a certificate check,
    /// hence one assembly loop: an unselected bit costs a few dozen gas, a selected one a code
    /// copy and a G2ADD (600 gas). The points must be on the curve (G2ADD checks nothing else).
    function accumulateG2FromCode(
        address source,
        uint256 codeOffset,
        uint256 mask,
        bool negate,
        uint256 acc,
        bool empty
    ) internal view {
        bool ok = true;
        assembly ("memory-safe") {
            let operand := add(acc, 256)
            for {} mask {} {
                // Skip a byte of unselected members at once.
                if iszero(and(mask, 0xff)) {
                    mask := shr(8, mask)
                    codeOffset := add(codeOffset, 2048)
                    continue
                }
                if and(mask, 1) {
                    switch empty
                    case 1 {
                        extcodecopy(source, acc, codeOffset, 256)
                        if negate { _negateY(acc) }
                        empty := 0
                    }
                    default {
                        extcodecopy(source, operand, codeOffset, 256)
                        if negate { _negateY(operand) }
                        ok := and(ok, staticcall(gas(), 0x0d, acc, 512, acc, 256))
                    }
                }
                mask := shr(1, mask)
                codeOffset := add(codeOffset, 256)
            }
            // y ↦ p − y for both Fp components of y (two words each), 0 staying 0.
            function _negateY(point) {
                for { let c := add(point, 128) } lt(c, add(point, 256)) { c := add(c, 64) } {
                    let hi := mload(c)
                    let lo := mload(add(c, 32))
                    if or(hi, lo) {
                        mstore(c, sub(sub(P_HI, hi), lt(P_LO, lo)))
                        mstore(add(c, 32), sub(P_LO, lo))
                    }
                }
            }
        }
        if (!ok) revert PrecompileFailed(G2ADD);
    }

    // ================================================================ PAIRING
    /// @notice Whether e(signature, −g2)·e(hashed, publicKey) = 1, i.e. `signature` is the
    /// secret of `publicKey` times `hashed`. `ok` is false when the precompile refuses an input
    /// (non-canonical, off the curve, outside the subgroup): no verdict then.
    function verifyPairing(bytes memory signature, bytes memory hashed, bytes memory publicKey)
        internal
        view
        returns (bool ok, bool valid)
    {
        bytes memory input = bytes.concat(signature, NEG_G2_GENERATOR, hashed, publicKey);
        bytes memory out;
        (ok, out) = PAIRING.staticcall(input);
        ok = ok && out.length == 32;
        valid = ok && abi.decode(out, (uint256)) == 1;
    }

    // ================================================================ INTERNAL
    /// @dev Calls `precompile` with `input`; its output fills `output` exactly, or reverts.
    function _call(address precompile, bytes memory input, bytes memory output) private view {
        bool ok;
        assembly ("memory-safe") {
            let outLen := mload(output)
            ok := staticcall(gas(), precompile, add(input, 32), mload(input), add(output, 32), outLen)
            ok := and(ok, eq(returndatasize(), outLen))
        }
        if (!ok) revert PrecompileFailed(precompile);
    }
}
