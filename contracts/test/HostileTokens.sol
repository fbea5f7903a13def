// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {MockERC20} from "./MockERC20.sol";

/// @notice Calls back into an arbitrary target on every transfer, like an ERC777 hook (THREATS A01,
/// A02). The outcome of the callback is recorded so a test can see that the re-entry was refused.
contract ReentrantToken is MockERC20 {
    address public hookTarget;
    bytes public hookCalldata;
    bool public lastHookSucceeded;
    bytes public lastHookReturn;
    bool internal _inHook;

    constructor() MockERC20("Reentrant", "RE", 18) {}

    function setHook(address target, bytes calldata data) external {
        hookTarget = target;
        hookCalldata = data;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        if (hookTarget != address(0) && !_inHook && from != address(0)) {
            _inHook = true;
            (lastHookSucceeded, lastHookReturn) = hookTarget.call(hookCalldata);
            _inHook = false;
        }
    }
}

/// @notice Burns 1% of every transfer: the receiver gets less than was sent (THREATS A03).
contract FeeOnTransferToken is MockERC20 {
    constructor() MockERC20("Fee on transfer", "FEE", 18) {}

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) return super._update(from, to, value);
        uint256 fee = value / 100;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}

/// @notice Transfers return `false` instead of reverting when they fail, and move nothing (A04).
contract FalseReturnToken is MockERC20 {
    bool public failing;

    constructor() MockERC20("False return", "FALSE", 18) {}

    function setFailing(bool failing_) external {
        failing = failing_;
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        if (failing) return false;
        return super.transfer(to, value);
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        if (failing) return false;
        return super.transferFrom(from, to, value);
    }
}

/// @notice Blocks transfers to or from listed addresses, like USDC's blocklist (THREATS A18).
contract BlocklistToken is MockERC20 {
    mapping(address => bool) public blocked;

    error Blocked(address account);

    constructor() MockERC20("Blocklist", "BLK", 6) {}

    function setBlocked(address account, bool isBlocked) external {
        blocked[account] = isBlocked;
    }

    function _update(address from, address to, uint256 value) internal override {
        if (blocked[from]) revert Blocked(from);
        if (blocked[to]) revert Blocked(to);
        super._update(from, to, value);
    }
}

/// @notice Balances are shares times an index the test can lower (a negative rebase, A05).
contract RebasingToken is ERC20 {
    uint256 public indexBps = 10_000;

    constructor() ERC20("Rebasing", "REB") {}

    /// @dev `_update` converts amounts to shares, so minting passes the amount unscaled.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function rebase(uint256 newIndexBps) external {
        indexBps = newIndexBps;
    }

    function balanceOf(address account) public view override returns (uint256) {
        return super.balanceOf(account) * indexBps / 10_000;
    }

    function totalSupply() public view override returns (uint256) {
        return super.totalSupply() * indexBps / 10_000;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value * 10_000 / indexBps);
    }
}

/// @notice USDT-style: `transfer` and `transferFrom` return nothing at all (A04).
contract NoReturnToken {
    string public constant name = "No return";
    string public constant symbol = "NORET";
    uint8 public constant decimals = 6;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function approve(address spender, uint256 amount) external {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
    }

    function transfer(address to, uint256 amount) external {
        _move(msg.sender, to, amount);
    }

    function transferFrom(address from, address to, uint256 amount) external {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= amount, "NoReturnToken: allowance");
        allowance[from][msg.sender] = allowed - amount;
        _move(from, to, amount);
    }

    function _move(address from, address to, uint256 amount) internal {
        require(balanceOf[from] >= amount, "NoReturnToken: balance");
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}
