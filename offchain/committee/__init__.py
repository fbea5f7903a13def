"""The BLS12-381 committee that certifies margin across venues: the EIP-2537 byte layout, the
scheme (min-signature BLS with proofs of possession) over a py-ecc or arkworks backend, the
registry client, members and the aggregator. See README "The BLS committee"."""
