// The development ceremony: a Groth16 proving key (snarkjs's .zkey format) and its verification
// key for one circuit, computed in one process from secrets τ, α, β, δ drawn from the OS's random
// source and dropped when it exits (γ is the G2 generator, as in every snarkjs key).
//
// It writes what snarkjs's stock pipeline (`powersoftau new/contribute/prepare phase2`, `groth16
// setup`, `zkey contribute`) writes for the same secrets, without its FFTs over curve points:
// every point is one multiple of the generator (curve.mjs). `--self-check` proves the equivalence
// on a circuit: with δ = 1 its key equals, section by section, what `snarkjs groth16 setup` makes
// from a ptau of the same τ, α, β (ptau.mjs, itself checked against `prepare phase2`).
//
// Trust: whoever ran this could have kept the secrets and could forge proofs for this key. It is
// for development and tests; docs/proofs.md gives the multi-party ceremony for production.
//
//   node tools/zk/setup.mjs <circuit.r1cs> <out.zkey> <out.vkey.json>
//   node tools/zk/setup.mjs --self-check <circuit.r1cs>

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {buildBn128} from "ffjavascript";
import * as snarkjs from "snarkjs";
import {BinWriter, randomScalar, readSections} from "./binfile.mjs";
import {GeneratorMultiples, Scalars, lagrange} from "./curve.mjs";
import {writePtau} from "./ptau.mjs";

const SECTION_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9];

function readR1cs(file, Fr) {
    const sections = readSections(file, "r1cs");
    const header = sections.get(1);
    const n8 = header.readUInt32LE(0);
    const at = 4 + n8;
    const r1cs = {
        nVars: header.readUInt32LE(at),
        nPublic: header.readUInt32LE(at + 4) + header.readUInt32LE(at + 8),
        nConstraints: header.readUInt32LE(at + 24),
        constraints: sections.get(2),
    };
    // Each constraint: three linear combinations (A, B, C), each a u32 count then (u32 wire,
    // 32-byte little-endian coefficient) terms.
    r1cs.forEachTerm = (fn) => {
        let p = 0;
        for (let c = 0; c < r1cs.nConstraints; c++) {
            for (let matrix = 0; matrix < 3; matrix++) {
                const count = r1cs.constraints.readUInt32LE(p);
                p += 4;
                for (let k = 0; k < count; k++) {
                    const wire = r1cs.constraints.readUInt32LE(p);
                    const coefficient = r1cs.constraints.subarray(p + 4, p + 4 + n8);
                    fn(matrix, c, wire, coefficient);
                    p += 4 + n8;
                }
            }
        }
    };
    if (n8 !== Fr.n8) throw new Error(`${file}: not a BN254 circuit`);
    return r1cs;
}

// snarkjs's domain: the smallest power of two above the constraints plus one row per public input.
function domainPower(r1cs) {
    return Math.floor(Math.log2(r1cs.nConstraints + r1cs.nPublic)) + 1;
}

export async function writeKey(r1csFile, zkeyFile, secrets) {
    const curve = await buildBn128(true);
    const multiples = new GeneratorMultiples();
    try {
        const {Fr} = curve;
        const {tau, alpha, beta, delta} = secrets;
        const r1cs = readR1cs(r1csFile, Fr);
        const power = domainPower(r1cs);
        const n = 2 ** power;
        const basis = await lagrange(Fr, tau, power);
        const doubled = await lagrange(Fr, tau, power + 1);

        // Per wire: A_i(τ), B_i(τ), C_i(τ), and the coefficient list the prover evaluates.
        const a = new Scalars(Fr, r1cs.nVars);
        const b = new Scalars(Fr, r1cs.nVars);
        const c = new Scalars(Fr, r1cs.nVars);
        const sums = [a, b, c];
        const coefficients = [];
        const R2 = Fr.e((1n << 512n) % curve.r);
        const coefficientBytes = (value) => {
            const out = Buffer.alloc(Fr.n8);
            Fr.toRprLE(out, 0, Fr.mul(value, R2));
            return out;
        };
        r1cs.forEachTerm((matrix, row, wire, bytes) => {
            const value = Fr.fromRprLE(bytes, 0);
            const sum = sums[matrix];
            sum.set(wire, Fr.add(sum.get(wire), Fr.mul(value, basis.get(row))));
            if (matrix < 2) coefficients.push([matrix, row, wire, coefficientBytes(value)]);
        });
        // One extra A row per public wire (the wire itself) keeps their IC terms independent.
        for (let wire = 0; wire <= r1cs.nPublic; wire++) {
            const row = r1cs.nConstraints + wire;
            a.set(wire, Fr.add(a.get(wire), basis.get(row)));
            coefficients.push([0, row, wire, coefficientBytes(Fr.one)]);
        }

        const combined = a.map((ai, i) => Fr.add(Fr.add(Fr.mul(beta, ai), Fr.mul(alpha, b.get(i))), c.get(i)));
        const inverseDelta = Fr.inv(delta);
        const pub = r1cs.nPublic + 1;
        const ic = new Scalars(Fr, pub);
        ic.buff.set(combined.buff.subarray(0, pub * Fr.n8));
        const priv = new Scalars(Fr, r1cs.nVars - pub);
        priv.buff.set(combined.buff.subarray(pub * Fr.n8));
        const h = new Scalars(Fr, n);
        for (let i = 0; i < n; i++) h.set(i, Fr.mul(doubled.get(2 * i + 1), inverseDelta));

        const single = (x) => {
            const s = new Scalars(Fr, 1);
            s.set(0, x);
            return s;
        };
        const header = Buffer.alloc(4 + 32 + 4 + 32 + 12);
        header.writeUInt32LE(32, 0);
        Buffer.from(curve.q.toString(16).padStart(64, "0"), "hex").reverse().copy(header, 4);
        header.writeUInt32LE(32, 36);
        Buffer.from(curve.r.toString(16).padStart(64, "0"), "hex").reverse().copy(header, 40);
        header.writeUInt32LE(r1cs.nVars, 72);
        header.writeUInt32LE(r1cs.nPublic, 76);
        header.writeUInt32LE(n, 80);
        const groth = [
            header,
            await multiples.mul("G1", single(alpha)),
            await multiples.mul("G1", single(beta)),
            await multiples.mul("G2", single(beta)),
            await multiples.mul("G2", single(Fr.one)),
            await multiples.mul("G1", single(delta)),
            await multiples.mul("G2", single(delta)),
        ];

        const coefficientSection = Buffer.alloc(4 + coefficients.length * (12 + Fr.n8));
        coefficientSection.writeUInt32LE(coefficients.length, 0);
        coefficients.forEach(([matrix, row, wire, value], k) => {
            const at = 4 + k * (12 + Fr.n8);
            coefficientSection.writeUInt32LE(matrix, at);
            coefficientSection.writeUInt32LE(row, at + 4);
            coefficientSection.writeUInt32LE(wire, at + 8);
            value.copy(coefficientSection, at + 12);
        });

        const out = new BinWriter(zkeyFile, "zkey", 10);
        out.section(1, [Buffer.from([1, 0, 0, 0])]); // Groth16
        out.section(2, groth);
        out.section(3, [await multiples.mul("G1", ic)]);
        out.section(4, [coefficientSection]);
        out.section(5, [await multiples.mul("G1", a)]);
        out.section(6, [await multiples.mul("G1", b)]);
        out.section(7, [await multiples.mul("G2", b)]);
        out.section(8, [await multiples.mul("G1", priv.map((x) => Fr.mul(x, inverseDelta)))]);
        out.section(9, [await multiples.mul("G1", h)]);
        // No circuit hash and no contribution records: `snarkjs zkey verify` has no transcript
        // to check here; the prover and the verification key do not read this section.
        out.section(10, [Buffer.alloc(64), Buffer.alloc(4)]);
        out.close();
        return {constraints: r1cs.nConstraints, publicInputs: r1cs.nPublic, domain: n};
    } finally {
        multiples.close();
        await curve.terminate();
    }
}

async function drawSecrets() {
    const curve = await buildBn128(true);
    const s = () => randomScalar(curve.Fr);
    const secrets = {tau: s(), alpha: s(), beta: s(), delta: s()};
    await curve.terminate();
    return secrets;
}

async function selfCheck(r1csFile) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "zkey-check-"));
    try {
        const secrets = {...(await drawSecrets())};
        const curve = await buildBn128(true);
        secrets.delta = curve.Fr.one;
        const power = domainPower(readR1cs(r1csFile, curve.Fr));
        await curve.terminate();
        const ours = path.join(dir, "ours.zkey");
        const ptau = path.join(dir, "check.ptau");
        const theirs = path.join(dir, "theirs.zkey");
        await writeKey(r1csFile, ours, secrets);
        await writePtau(ptau, power + 1, secrets);
        await snarkjs.zKey.newZKey(r1csFile, ptau, theirs);
        const mine = readSections(ours, "zkey");
        const stock = readSections(theirs, "zkey");
        for (const id of SECTION_IDS) {
            if (!mine.get(id).equals(stock.get(id))) throw new Error(`zkey section ${id} differs from snarkjs's`);
        }
        console.log(`setup self-check: sections ${SECTION_IDS.join(", ")} identical to snarkjs groth16 setup`);
    } finally {
        fs.rmSync(dir, {recursive: true, force: true});
    }
}

const [, , first, second, third] = process.argv;
if (first === "--self-check") {
    await selfCheck(second);
} else {
    const started = Date.now();
    const shape = await writeKey(first, second, await drawSecrets());
    const vkey = await snarkjs.zKey.exportVerificationKey(second);
    fs.writeFileSync(third, JSON.stringify(vkey, null, 1));
    const seconds = (Date.now() - started) / 1000;
    // Kept beside the key for `marginsync bench prove` (the setup time of this machine's build).
    fs.writeFileSync(third.replace(/\.vkey\.json$/, ".setup.json"), JSON.stringify({...shape, seconds}));
    console.log(
        `setup: ${path.basename(first)}: ${shape.constraints} constraints, ${shape.publicInputs} public inputs, ` +
            `domain ${shape.domain}, ${seconds.toFixed(1)} s`,
    );
}
process.exit(0);
