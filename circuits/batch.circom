pragma circom 2.1.6;

// A batch of accounts with up to two underlyings each (docs/proofs.md: why these sizes).
include "margin.circom";

component main {public [words]} = MarginProof(32, 2);
