pragma circom 2.1.6;

// The margin circuit's pinning gadgets with their witnesses as inputs, so that a test can hand
// them a wrong witness and watch the constraints refuse it (soundness probes).
include "../../../circuits/margin.circom";

template Probes() {
    signal input lossRaw;
    signal input loss;
    signal input offsetSquared;
    signal input root;
    component ceilDiv = CeilDivCheck(LOSS_DIVISOR(), REQUIREMENT_BITS(), LOSS_REMAINDER_BITS());
    ceilDiv.x <== lossRaw;
    ceilDiv.q <== loss;
    component floorSqrt = FloorSqrtCheck(BPS(), ROOT_BITS(), ROOT_BITS() + 15);
    floorSqrt.x <== offsetSquared;
    floorSqrt.m <== root;
}

component main = Probes();
