pragma circom 2.1.6;

// One account with up to eight underlyings.
include "margin.circom";

component main {public [words]} = MarginProof(1, 8);
