"""The chain layer: everything that talks to a node, and nothing that decides what to say.

`bindings` (web3 from the compiled artifacts, pre-flighted transactions, decoded events),
`anvil` (the embedded local chain), `deploy` (a system from a spec), `client` (typed calls on one
deployed system), the event mirrors (`mirror`: accounts; `attestations`: the verifier's S1 state
and its in-force rule; `proven`: the proof registry's entries and the proof gate) and `sender`
(one key's transactions: nonces, fees, journal).
"""

from offchain.chain.bindings import Artifacts, Chain, Event, checksum

__all__ = ["Artifacts", "Chain", "Event", "checksum"]
