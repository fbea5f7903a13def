// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title CodeData
/// @notice Immutable data kept as a contract's code ("SSTORE2"): writing costs 200 gas a byte
/// once, reading costs one account access and 3 gas a word, far below storage slots (2,100 gas
/// each, cold) for data read whole or in large pieces. The data contract's code is a STOP byte
/// followed by the data, so calling it does nothing.
library CodeData {
    /// @dev The data is this many bytes into the code (after the STOP byte).
    uint256 internal constant DATA_OFFSET = 1;

    error CodeDataWriteFailed(uint256 length);

    function write(bytes memory data) internal returns (address pointer) {
        // Creation code: copy the runtime (STOP ‖ data) that follows this 12-byte header and return it.
        bytes memory creation =
            abi.encodePacked(hex"61", uint16(data.length + DATA_OFFSET), hex"80600c6000396000f3", hex"00", data);
        assembly ("memory-safe") {
            pointer := create(0, add(creation, 32), mload(creation))
        }
        if (pointer == address(0)) revert CodeDataWriteFailed(data.length);
    }

    /// @notice Copies `length` bytes from `offset` of the data at `pointer` to memory at `dest`.
    function copyTo(address pointer, uint256 offset, uint256 length, uint256 dest) internal view {
        assembly ("memory-safe") {
            extcodecopy(pointer, dest, add(offset, DATA_OFFSET), length)
        }
    }

    function read(address pointer, uint256 offset, uint256 length) internal view returns (bytes memory data) {
        data = new bytes(length);
        uint256 dest;
        assembly ("memory-safe") {
            dest := add(data, 32)
        }
        copyTo(pointer, offset, length, dest);
    }
}
