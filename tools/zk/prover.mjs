// The prover as a long-lived process, so that node and snarkjs load once: one JSON request per
// line on stdin, one JSON answer per line on stdout (offchain/prove/prover.py drives it).
//
//   {"circuit": "build/zk/account", "input": {...}, "prove": true}
//   → {"ok": true, "witnessSeconds": 0.1, "proveSeconds": 0.6, "proof": {...}, "publicSignals": [...]}
//   → {"ok": false, "error": "..."} when the witness breaks a constraint (the statement is false)

import readline from "node:readline";
import * as snarkjs from "snarkjs";

async function handle({circuit, input, prove}) {
    const name = circuit.split("/").pop();
    const witness = {type: "mem"};
    let started = performance.now();
    await snarkjs.wtns.calculate(input, `${circuit}_js/${name}.wasm`, witness);
    const witnessSeconds = (performance.now() - started) / 1000;
    if (!prove) return {ok: true, witnessSeconds};
    started = performance.now();
    const {proof, publicSignals} = await snarkjs.groth16.prove(`${circuit}.zkey`, witness);
    return {ok: true, witnessSeconds, proveSeconds: (performance.now() - started) / 1000, proof, publicSignals};
}

const lines = readline.createInterface({input: process.stdin});
for await (const line of lines) {
    let answer;
    try {
        answer = await handle(JSON.parse(line));
    } catch (err) {
        answer = {ok: false, error: String(err.message ?? err).split("\n")[0]};
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
}
process.exit(0);
