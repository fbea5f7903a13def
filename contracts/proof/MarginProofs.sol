// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IClearinghouse} from "../interfaces/IClearinghouse.sol";
import {IMarginProofs} from "../interfaces/IMarginProofs.sol";
import {IOracleRouter} from "../interfaces/IOracleRouter.sol";
import {MarginMath} from "../libraries/MarginMath.sol";
import {MarginProofInputs} from "./MarginProofInputs.sol";

/// @title MarginProofs
/// @notice Proven margin requirements, bound to the clearinghouse's own state (see IMarginProofs).
contract MarginProofs is IMarginProofs, Ownable2Step {
    using MarginProofInputs for MarginProofInputs.Stream;

    // ================================================================ STORAGE
    uint256 internal constant MICRO_USD_TO_WAD = 1e12;
    uint256 internal constant E8_TO_E18 = 1e10;
    uint256 internal constant MAX_PRICE_BAND_BPS = 2000;

    /// @inheritdoc IMarginProofs
    IClearinghouse public immutable clearinghouse;
    IOracleRouter internal immutable _oracle;

    /// @inheritdoc IMarginProofs
    uint256 public modelHash;
    /// @inheritdoc IMarginProofs
    uint32 public modelVersion;
    /// @inheritdoc IMarginProofs
    uint16 public priceBandBps;
    uint32 internal _priceSetCount;
    Circuit[] internal _circuits;
    mapping(address account => ProvenEntry) internal _entries;
    mapping(uint32 priceSetId => uint64[8]) internal _priceSets;

    /// @dev One account's netted positions, as the circuit takes them.
    struct Book {
        uint256 assetMask;
        int256[8] netSize;
        uint64 positionNonce;
    }

    // ================================================================ CONSTRUCTOR
    constructor(address owner_, IClearinghouse clearinghouse_, uint256 modelHash_, uint16 priceBandBps_)
        Ownable(owner_)
    {
        clearinghouse = clearinghouse_;
        _oracle = clearinghouse_.oracle();
        _setModel(modelHash_);
        _setPriceBand(priceBandBps_);
    }

    // ================================================================ EXTERNAL
    /// @inheritdoc IMarginProofs
    function submit(uint256 circuitId, Claim[] calldata claims, uint64[8] calldata pricesE8, uint256[8] calldata proof)
        external
    {
        Circuit memory c = _circuit(circuitId);
        (uint256[] memory input, Book[] memory books) = _build(c, claims, pricesE8, true);
        if (!c.verifier.verifyProof(proof, input)) revert InvalidProof(circuitId);

        uint32 priceSetId = ++_priceSetCount;
        _priceSets[priceSetId] = pricesE8;
        emit PricesProven(priceSetId, circuitId, pricesE8);
        uint32 version = modelVersion;
        for (uint256 i; i < claims.length; ++i) {
            Claim calldata claim = claims[i];
            if (claim.account == address(0)) continue;
            uint64 nonce = books[i].positionNonce;
            _entries[claim.account] = ProvenEntry(nonce, claim.imMicroUsd, claim.mmMicroUsd, priceSetId, version);
            emit RequirementProven(claim.account, priceSetId, nonce, claim.imMicroUsd, claim.mmMicroUsd, version);
        }
    }

    // ================================================================ ADMIN
    /// @inheritdoc IMarginProofs
    function setModel(uint256 modelHash_) external onlyOwner {
        _setModel(modelHash_);
    }

    /// @inheritdoc IMarginProofs
    function setPriceBandBps(uint16 priceBandBps_) external onlyOwner {
        _setPriceBand(priceBandBps_);
    }

    /// @inheritdoc IMarginProofs
    function addCircuit(Circuit calldata circuit_) external onlyOwner returns (uint256 circuitId) {
        uint256 expected = MarginProofInputs.publicInputCount(circuit_.accounts, circuit_.slots);
        uint256 actual = circuit_.verifier.publicInputCount();
        if (circuit_.accounts == 0 || actual != expected) {
            revert InvalidCircuit(address(circuit_.verifier), actual, expected);
        }
        circuitId = _circuits.length;
        _circuits.push(circuit_);
        emit CircuitAdded(circuitId, address(circuit_.verifier), circuit_.accounts, circuit_.slots);
    }

    // ================================================================ VIEWS
    /// @inheritdoc IMarginProofs
    function provenRequirement(
        address account,
        uint64 positionNonce,
        uint256 assetMask,
        uint256[] calldata pricesE18,
        uint256 otherImWad,
        uint256 otherMmWad
    ) external view returns (bool inForce, uint256 imWad, uint256 mmWad) {
        uint256 assets = MarginMath.popCount(assetMask);
        if (pricesE18.length != assets) revert PriceCountMismatch(pricesE18.length, assets);
        ProvenEntry memory e = _entries[account];
        if (
            e.priceSetId == 0 || e.positionNonce != positionNonce || e.modelVersion != modelVersion
                || assetMask >> MarginProofInputs.ASSETS != 0
        ) return (false, otherImWad, otherMmWad);
        uint64[8] storage proven = _priceSets[e.priceSetId];
        uint256 k;
        for (uint256 mask = assetMask; mask != 0; mask &= mask - 1) {
            uint256 asset = MarginMath.lowestBit(mask);
            if (!_withinBand(uint256(proven[asset]) * E8_TO_E18, pricesE18[k++])) {
                return (false, otherImWad, otherMmWad);
            }
        }
        return (true, uint256(e.imMicroUsd) * MICRO_USD_TO_WAD, uint256(e.mmMicroUsd) * MICRO_USD_TO_WAD);
    }

    /// @inheritdoc IMarginProofs
    function publicInputs(uint256 circuitId, Claim[] calldata claims, uint64[8] calldata pricesE8)
        external
        view
        returns (uint256[] memory input)
    {
        (input,) = _build(_circuit(circuitId), claims, pricesE8, false);
    }

    /// @inheritdoc IMarginProofs
    function provenEntry(address account) external view returns (ProvenEntry memory) {
        return _entries[account];
    }

    /// @inheritdoc IMarginProofs
    function priceSet(uint32 priceSetId) external view returns (uint64[8] memory) {
        return _priceSets[priceSetId];
    }

    /// @inheritdoc IMarginProofs
    function circuit(uint256 circuitId) external view returns (Circuit memory) {
        return _circuit(circuitId);
    }

    /// @inheritdoc IMarginProofs
    function circuitCount() external view returns (uint256) {
        return _circuits.length;
    }

    // ================================================================ INTERNAL
    /// @dev The public input for `claims` from this contract's own reads (P1). With `checkPrices`
    /// every price an account's positions use must be within the band of the oracle.
    function _build(Circuit memory c, Claim[] calldata claims, uint64[8] calldata pricesE8, bool checkPrices)
        internal
        view
        returns (uint256[] memory input, Book[] memory books)
    {
        if (claims.length == 0 || claims.length > c.accounts) {
            revert ClaimCountOutOfRange(claims.length, c.accounts);
        }
        MarginProofInputs.Stream memory s = MarginProofInputs.start(modelHash, c.accounts, c.slots);
        for (uint256 asset; asset < MarginProofInputs.ASSETS; ++asset) {
            s.push(pricesE8[asset], MarginProofInputs.PRICE_BITS);
        }
        books = new Book[](claims.length);
        uint256 assetsUsed;
        // Markets' oracle assets never change after listing; each is read once per call.
        uint256[32] memory assetOfMarket;
        for (uint256 i; i < c.accounts; ++i) {
            Claim memory claim = i < claims.length ? claims[i] : Claim(address(0), 0, 0);
            Book memory book;
            if (claim.account != address(0)) {
                book = _book(claim.account, c.slots, assetOfMarket);
                books[i] = book;
                assetsUsed |= book.assetMask;
            }
            s.push(uint160(claim.account), MarginProofInputs.ADDRESS_BITS);
            s.push(claim.mmMicroUsd, MarginProofInputs.REQUIREMENT_BITS);
            s.push(claim.imMicroUsd, MarginProofInputs.REQUIREMENT_BITS);
            uint256 filled;
            for (uint256 mask = book.assetMask; mask != 0; mask &= mask - 1) {
                uint256 asset = MarginMath.lowestBit(mask);
                s.pushSlot(asset, book.netSize[asset]);
                ++filled;
            }
            for (; filled < c.slots; ++filled) {
                s.pushSlot(0, 0);
            }
        }
        if (checkPrices) _checkPrices(assetsUsed, pricesE8);
        input = s.words;
    }

    /// @dev An account's positions netted per underlying (zero nets drop out), ascending asset.
    function _book(address account, uint256 slots, uint256[32] memory assetOfMarket)
        internal
        view
        returns (Book memory book)
    {
        IClearinghouse.Account memory a = clearinghouse.account(account);
        book.positionNonce = a.positionNonce;
        for (uint256 mask = a.marketMask; mask != 0; mask &= mask - 1) {
            uint256 marketId = MarginMath.lowestBit(mask);
            if (assetOfMarket[marketId] == 0) assetOfMarket[marketId] = clearinghouse.market(marketId).oracleAsset + 1;
            uint256 asset = assetOfMarket[marketId] - 1;
            if (asset >= MarginProofInputs.ASSETS) revert UnsupportedUnderlying(account, marketId, asset);
            book.netSize[asset] += clearinghouse.position(account, marketId);
        }
        for (uint256 asset; asset < MarginProofInputs.ASSETS; ++asset) {
            int256 net = book.netSize[asset];
            if (net == 0) continue;
            if (MarginMath.abs(net) >> MarginProofInputs.SIZE_BITS != 0) revert SizeOutOfRange(account, asset, net);
            book.assetMask |= 1 << asset;
        }
        uint256 count = MarginMath.popCount(book.assetMask);
        if (count > slots) revert TooManyUnderlyings(account, count, slots);
    }

    function _checkPrices(uint256 assetMask, uint64[8] calldata pricesE8) internal view {
        for (uint256 mask = assetMask; mask != 0; mask &= mask - 1) {
            uint256 asset = MarginMath.lowestBit(mask);
            (uint256 oraclePrice, IOracleRouter.PriceStatus status) = _oracle.tryPriceE18(asset);
            if (status != IOracleRouter.PriceStatus.OK) revert PriceUnavailable(asset, status);
            uint256 proven = uint256(pricesE8[asset]) * E8_TO_E18;
            if (!_withinBand(proven, oraclePrice)) {
                revert ProvenPriceOutsideBand(asset, proven, oraclePrice, priceBandBps);
            }
        }
    }

    /// @dev |proven − current| ≤ current · band (the attestation verifier's rule, inclusive).
    function _withinBand(uint256 provenE18, uint256 currentE18) internal view returns (bool) {
        uint256 gap = provenE18 > currentE18 ? provenE18 - currentE18 : currentE18 - provenE18;
        return gap * MarginMath.BPS <= currentE18 * priceBandBps;
    }

    function _circuit(uint256 circuitId) internal view returns (Circuit memory) {
        if (circuitId >= _circuits.length) revert UnknownCircuit(circuitId, _circuits.length);
        return _circuits[circuitId];
    }

    function _setModel(uint256 modelHash_) internal {
        modelHash = modelHash_;
        uint32 version = ++modelVersion;
        emit ModelSet(version, modelHash_);
    }

    function _setPriceBand(uint16 priceBandBps_) internal {
        if (priceBandBps_ == 0 || priceBandBps_ > MAX_PRICE_BAND_BPS) revert InvalidPriceBand(priceBandBps_);
        priceBandBps = priceBandBps_;
        emit PriceBandSet(priceBandBps_);
    }
}
