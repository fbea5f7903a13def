pragma circom 2.1.6;

// The proven margin statement: scenario portfolio margin for perpetuals in fixed point.
//
// For each account: positions netted per underlying (a "slot": asset, side, |size|), prices in
// 1e-8 USD, and the model's parameters in basis points. Per slot, the worst loss over the spot-shock
// grid plus the perp contingency, rounded up to a micro-USD; across slots, the documented offset
// sqrt((P + N)² − 2·Σ (1 + ρ)·L_long·L_short), rounded up, plus non-directional losses; then the
// floor fraction of the standalone sum and the IM factor. offchain/prove/model.py computes exactly
// the same integers (a parity test holds them equal); docs/proofs.md states the statement and the
// public input layout, which offchain/prove/layout.py and contracts/proof/MarginProofInputs.sol
// build bit for bit.
//
// Every value a prover chooses is pinned: bits are booleans, every `<--` is followed by the
// constraints that make it the only possible value, every product's factors are range-checked so
// that no intermediate reaches the field modulus (nothing wraps: H04).

include "bitify.circom";
include "comparators.circom";
include "poseidon.circom";

// ------------------------------------------------------------------ layout (docs/proofs.md)
function ASSETS() { return 8; }
function ASSET_BITS() { return 3; }
function PRICE_BITS() { return 64; }        // price of one whole unit, 1e-8 USD
function ADDRESS_BITS() { return 160; }
function REQUIREMENT_BITS() { return 64; }  // micro-USD
function SIZE_BITS() { return 96; }         // |net size|, 1e-18 units
function WORD_BITS() { return 253; }        // below log2(r): a packed word never wraps
function SCENARIOS() { return 33; }
function SHOCK_BITS() { return 15; }        // spot shock + SHOCK_OFFSET, bps
function SHOCK_OFFSET() { return 10000; }
function RATE_BITS() { return 14; }         // perp contingency, floor fraction: bps
function FACTOR_BITS() { return 17; }       // IM factor: bps
function CREDIT_BITS() { return 15; }       // 1 + ρ per pair of assets: bps
function PAIRS() { return ASSETS() * (ASSETS() - 1) \ 2; }
function PARAM_BITS() {
    return SCENARIOS() * SHOCK_BITS() + 2 * RATE_BITS() + FACTOR_BITS() + PAIRS() * CREDIT_BITS();
}
function SLOT_BITS() { return ASSET_BITS() + 1 + SIZE_BITS(); }
function ACCOUNT_BITS(K) { return ADDRESS_BITS() + 2 * REQUIREMENT_BITS() + K * SLOT_BITS(); }
function STREAM_BITS(N, K) { return ASSETS() * PRICE_BITS() + N * ACCOUNT_BITS(K); }
function WORDS(nBits) { return (nBits + WORD_BITS() - 1) \ WORD_BITS(); }

// ------------------------------------------------------------------ fixed point
function BPS() { return 10000; }
// |size| (1e-18) × price (1e-8 USD) × rate (bps) → micro-USD.
function LOSS_DIVISOR() { return 10 ** 24; }
function LOSS_REMAINDER_BITS() { return 80; }   // 2^80 ≥ LOSS_DIVISOR
function ROOT_BITS() { return 68; }             // a root ≤ Σ of 8 losses < 2^67
function TOTAL_BITS() { return 70; }            // sums and the floor of 8 losses

function floor_sqrt(n) {
    // Integer square root by bisection over the bits of the answer (witness generation only).
    var root = 0;
    for (var b = ROOT_BITS() - 1; b >= 0; b--) {
        var candidate = root + (1 << b);
        if (candidate * candidate <= n) {
            root = candidate;
        }
    }
    return root;
}

// ------------------------------------------------------------------ gadgets

// The low `nBits` bits of a stream of words, WORD_BITS per word, least significant first. The
// last word is checked to hold nothing above the stream.
template Unpack(nBits) {
    var W = WORD_BITS();
    var nWords = WORDS(nBits);
    signal input words[nWords];
    signal output bits[nBits];
    component n2b[nWords];
    for (var w = 0; w < nWords; w++) {
        var width = w == nWords - 1 ? nBits - w * W : W;
        n2b[w] = Num2Bits(width);
        n2b[w].in <== words[w];
        for (var i = 0; i < width; i++) {
            bits[w * W + i] <== n2b[w].out[i];
        }
    }
}

// out[v] = 1 exactly when the bits spell v: a binary tree over the bits, most significant first,
// where node i has children 2i (bit clear) and 2i + 1 (bit set), and leaf 2^n + v is v's indicator.
template OneHot(n) {
    signal input bits[n];
    signal output out[1 << n];
    signal node[2 << n];
    node[0] <== 0;
    node[1] <== 1;
    var level = 0;
    for (var i = 1; i < (1 << n); i++) {
        if (i == 2 << level) {
            level += 1;
        }
        node[2 * i + 1] <== node[i] * bits[n - 1 - level];
        node[2 * i] <== node[i] - node[2 * i + 1];
    }
    for (var v = 0; v < (1 << n); v++) {
        out[v] <== node[(1 << n) + v];
    }
}

// Pins q = ceil(x / D): 0 ≤ q·D − x < D and q < 2^qBits, so q·D < p and the equation is one over
// the integers. Needs D ≤ 2^rBits and x below p − D.
template CeilDivCheck(D, qBits, rBits) {
    assert(D <= 2 ** rBits);
    assert(qBits + rBits < 253);
    signal input x;
    signal input q;
    signal roundedUp <== q * D - x;
    component qRange = Num2Bits(qBits);
    qRange.in <== q;
    component atLeastZero = Num2Bits(rBits);
    atLeastZero.in <== roundedUp;
    component belowD = Num2Bits(rBits);
    belowD.in <== D - 1 - roundedUp;
}

template CeilDiv(D, qBits, rBits) {
    signal input x;
    signal output q;
    q <-- (x + D - 1) \ D;
    component check = CeilDivCheck(D, qBits, rBits);
    check.x <== x;
    check.q <== q;
}

// Pins m = floor(sqrt(x / S)): S·m² ≤ x < S·(m + 1)², with m < 2^rootBits. Both gaps are below
// S·(2m + 1) < 2^gapBits, and x = S·m² + gap holds over the integers because the right side is
// far below p; a negative x (a wrapped field element) therefore has no m at all (H04).
template FloorSqrtCheck(S, rootBits, gapBits) {
    assert(2 * rootBits + 16 < 253);
    signal input x;
    signal input m;
    signal output exact;  // 1 when S·m² = x
    component mRange = Num2Bits(rootBits);
    mRange.in <== m;
    signal square <== m * m;
    signal below <== x - S * square;
    component belowRange = Num2Bits(gapBits);
    belowRange.in <== below;
    component aboveRange = Num2Bits(gapBits);
    aboveRange.in <== S * (square + 2 * m + 1) - 1 - x;
    exact <== IsZero()(below);
}

// ceil(sqrt(x / S)) for 0 ≤ x < S·2^(2·rootBits).
template CeilSqrt(S, rootBits, gapBits) {
    signal input x;
    signal output root;
    signal m;
    m <-- floor_sqrt(x \ S);
    component check = FloorSqrtCheck(S, rootBits, gapBits);
    check.x <== x;
    check.m <== m;
    root <== m + 1 - check.exact;
}

// ------------------------------------------------------------------ the model

// The model's parameters, unpacked from private words whose Poseidon hash is public: a proof
// about other parameters has another hash and verifies nothing (P1). The worst loss of a linear
// position over the whole grid is reached at its extreme shocks, found here once per proof.
template ModelParams() {
    var A = ASSETS();
    var G = SCENARIOS();
    signal input words[WORDS(PARAM_BITS())];
    signal output hash;
    signal output worstFallBps;   // max(0, −min shock): a long's loss per unit of notional
    signal output worstRiseBps;   // max(0, max shock): a short's
    signal output fallBinds;      // worstFallBps > 0, so a long's worst scenario is a fall
    signal output riseBinds;
    signal output contingencyBps;
    signal output floorBps;
    signal output imFactorBps;
    signal output creditBps[A][A];

    hash <== Poseidon(WORDS(PARAM_BITS()))(words);
    component unpack = Unpack(PARAM_BITS());
    unpack.words <== words;
    signal bits[PARAM_BITS()] <== unpack.bits;
    var at = 0;

    signal shock[G];
    for (var g = 0; g < G; g++) {
        var value = 0;
        for (var i = 0; i < SHOCK_BITS(); i++) {
            value += bits[at + i] * (1 << i);
        }
        shock[g] <== value;
        at += SHOCK_BITS();
    }
    signal lowest[G];
    signal highest[G];
    component lower[G];
    component higher[G];
    lowest[0] <== shock[0];
    highest[0] <== shock[0];
    for (var g = 1; g < G; g++) {
        lower[g] = LessThan(SHOCK_BITS());
        lower[g].in <== [shock[g], lowest[g - 1]];
        lowest[g] <== lowest[g - 1] + lower[g].out * (shock[g] - lowest[g - 1]);
        higher[g] = LessThan(SHOCK_BITS());
        higher[g].in <== [highest[g - 1], shock[g]];
        highest[g] <== highest[g - 1] + higher[g].out * (shock[g] - highest[g - 1]);
    }
    signal noFall <== LessThan(SHOCK_BITS())([SHOCK_OFFSET(), lowest[G - 1]]);
    worstFallBps <== (1 - noFall) * (SHOCK_OFFSET() - lowest[G - 1]);
    signal noRise <== LessThan(SHOCK_BITS())([highest[G - 1], SHOCK_OFFSET()]);
    worstRiseBps <== (1 - noRise) * (highest[G - 1] - SHOCK_OFFSET());
    signal noFallLoss <== IsZero()(worstFallBps);
    signal noRiseLoss <== IsZero()(worstRiseBps);
    fallBinds <== 1 - noFallLoss;
    riseBinds <== 1 - noRiseLoss;

    var rates[3];
    var widths[3] = [RATE_BITS(), RATE_BITS(), FACTOR_BITS()];
    for (var r = 0; r < 3; r++) {
        rates[r] = 0;
        for (var i = 0; i < widths[r]; i++) {
            rates[r] += bits[at + i] * (1 << i);
        }
        at += widths[r];
    }
    contingencyBps <== rates[0];
    floorBps <== rates[1];
    imFactorBps <== rates[2];
    for (var u = 0; u < A; u++) {
        creditBps[u][u] <== 0;
        for (var v = u + 1; v < A; v++) {
            var value = 0;
            for (var i = 0; i < CREDIT_BITS(); i++) {
                value += bits[at + i] * (1 << i);
            }
            creditBps[u][v] <== value;
            creditBps[v][u] <== value;
            at += CREDIT_BITS();
        }
    }
}

// One account's maintenance and initial requirement (micro-USD) from its K slots. Slots hold
// distinct assets (the encoder nets positions per underlying); an empty slot has size 0.
template AccountMargin(K) {
    var A = ASSETS();
    signal input assetBits[K][ASSET_BITS()];
    signal input isShort[K];
    signal input size[K];            // |net size| < 2^SIZE_BITS
    signal input priceE8[A];         // < 2^PRICE_BITS
    signal input worstFallBps;
    signal input worstRiseBps;
    signal input fallBinds;
    signal input riseBinds;
    signal input contingencyBps;
    signal input floorBps;
    signal input imFactorBps;
    signal input creditBps[A][A];
    signal output mm;
    signal output im;

    // Per slot: the loss L = ceil(|size| · price · (worst shock + contingency)) in micro-USD, and
    // its direction: a long whose worst scenario is a fall, or a short whose worst is a rise.
    component asset[K];
    signal pricePart[K][A];
    signal price[K];
    signal rateBps[K];
    signal notional[K];
    signal lossRaw[K];
    component loss[K];
    signal longLeg[K];
    signal shortLeg[K];
    signal longLoss[K];
    signal shortLoss[K];
    signal longByAsset[K][A];
    signal shortByAsset[K][A];
    component lossIsZero[K];
    signal leg[K];
    var directional = 0;
    var total = 0;
    var legs = 0;
    var longs[A];
    var shorts[A];
    for (var u = 0; u < A; u++) {
        longs[u] = 0;
        shorts[u] = 0;
    }
    for (var s = 0; s < K; s++) {
        asset[s] = OneHot(ASSET_BITS());
        asset[s].bits <== assetBits[s];
        var p = 0;
        for (var u = 0; u < A; u++) {
            pricePart[s][u] <== asset[s].out[u] * priceE8[u];
            p += pricePart[s][u];
        }
        price[s] <== p;
        rateBps[s] <== worstFallBps + isShort[s] * (worstRiseBps - worstFallBps) + contingencyBps;
        notional[s] <== size[s] * price[s];           // < 2^160
        lossRaw[s] <== notional[s] * rateBps[s];      // < 2^176: rate < 2^16
        loss[s] = CeilDiv(LOSS_DIVISOR(), REQUIREMENT_BITS(), LOSS_REMAINDER_BITS());
        loss[s].x <== lossRaw[s];

        longLeg[s] <== fallBinds - isShort[s] * fallBinds;
        shortLeg[s] <== isShort[s] * riseBinds;
        longLoss[s] <== loss[s].q * longLeg[s];
        shortLoss[s] <== loss[s].q * shortLeg[s];
        for (var u = 0; u < A; u++) {
            longByAsset[s][u] <== longLoss[s] * asset[s].out[u];
            shortByAsset[s][u] <== shortLoss[s] * asset[s].out[u];
            longs[u] += longByAsset[s][u];
            shorts[u] += shortByAsset[s][u];
        }
        lossIsZero[s] = IsZero();
        lossIsZero[s].in <== loss[s].q;
        leg[s] <== (longLeg[s] + shortLeg[s]) * (1 - lossIsZero[s].out);

        directional += longLoss[s] + shortLoss[s];
        total += loss[s].q;
        legs += leg[s];
    }

    // Across underlyings: Q = 1e4·(P + N)² − 2·Σ_{long u, short v} (1 + ρ_uv)·L_u·L_v ≥ 0, in
    // bps·µUSD², and the offset requirement is ceil(sqrt(Q / 1e4)).
    signal creditTimesShort[A][A];
    signal creditTerm[A];
    var credit = 0;
    for (var u = 0; u < A; u++) {
        var againstShorts = 0;
        for (var v = 0; v < A; v++) {
            creditTimesShort[u][v] <== creditBps[u][v] * shorts[v];
            againstShorts += creditTimesShort[u][v];
        }
        creditTerm[u] <== longs[u] * againstShorts;
        credit += creditTerm[u];
    }
    signal directionalSquared <== directional * directional;
    component offset = CeilSqrt(BPS(), ROOT_BITS(), ROOT_BITS() + 15);
    offset.x <== BPS() * directionalSquared - 2 * credit;

    // Rounding each hedge leg's L up can lower the square root by up to one micro-USD per leg
    // (its slope in one L is ≥ −1); adding the number of legs keeps the result conservative.
    signal noCredit <== IsZero()(credit);
    signal slack <== (1 - noCredit) * legs;

    signal body <== offset.root + (total - directional) + slack;
    signal floorRaw <== floorBps * total;
    component floorReq = CeilDiv(BPS(), TOTAL_BITS(), RATE_BITS());
    floorReq.x <== floorRaw;
    component floorBinds = LessThan(TOTAL_BITS());
    floorBinds.in <== [body, floorReq.q];
    mm <== body + floorBinds.out * (floorReq.q - body);

    signal imRaw <== imFactorBps * mm;
    component initial = CeilDiv(BPS(), REQUIREMENT_BITS(), RATE_BITS());
    initial.x <== imRaw;
    im <== initial.q;
}

// The statement: for each of N accounts (address, MM, IM and K slots, all public), MM and IM are
// the model's output for its slots at the public prices, under the model whose parameters hash
// to the public modelHash. Public input: words[0] = modelHash, then the packed stream.
template MarginProof(N, K) {
    var A = ASSETS();
    var nBits = STREAM_BITS(N, K);
    signal input words[1 + WORDS(nBits)];
    signal input paramWords[WORDS(PARAM_BITS())];

    component model = ModelParams();
    model.words <== paramWords;
    words[0] === model.hash;

    component stream = Unpack(nBits);
    for (var w = 0; w < WORDS(nBits); w++) {
        stream.words[w] <== words[1 + w];
    }
    signal bits[nBits] <== stream.bits;
    var at = 0;
    var price[A];
    for (var u = 0; u < A; u++) {
        price[u] = 0;
        for (var i = 0; i < PRICE_BITS(); i++) {
            price[u] += bits[at + i] * (1 << i);
        }
        at += PRICE_BITS();
    }

    component account[N];
    for (var a = 0; a < N; a++) {
        // The address bits need no constraint beyond their unpacking: as part of the public
        // input they enter the verifier's pairing, so the proof holds for this account only.
        at += ADDRESS_BITS();
        var requirement[2];
        for (var r = 0; r < 2; r++) {
            requirement[r] = 0;
            for (var i = 0; i < REQUIREMENT_BITS(); i++) {
                requirement[r] += bits[at + i] * (1 << i);
            }
            at += REQUIREMENT_BITS();
        }

        account[a] = AccountMargin(K);
        for (var s = 0; s < K; s++) {
            for (var i = 0; i < ASSET_BITS(); i++) {
                account[a].assetBits[s][i] <== bits[at + i];
            }
            at += ASSET_BITS();
            account[a].isShort[s] <== bits[at];
            at += 1;
            var size = 0;
            for (var i = 0; i < SIZE_BITS(); i++) {
                size += bits[at + i] * (1 << i);
            }
            account[a].size[s] <== size;
            at += SIZE_BITS();
        }
        for (var u = 0; u < A; u++) {
            account[a].priceE8[u] <== price[u];
        }
        account[a].worstFallBps <== model.worstFallBps;
        account[a].worstRiseBps <== model.worstRiseBps;
        account[a].fallBinds <== model.fallBinds;
        account[a].riseBinds <== model.riseBinds;
        account[a].contingencyBps <== model.contingencyBps;
        account[a].floorBps <== model.floorBps;
        account[a].imFactorBps <== model.imFactorBps;
        account[a].creditBps <== model.creditBps;
        account[a].mm === requirement[0];
        account[a].im === requirement[1];
    }
}

