// A prepared powers-of-tau file (snarkjs's "ptau" format, sections 1-7 and 12-15) computed from
// given secrets τ, α, β. The setup's self-check uses it to compare the development ceremony's
// proving key with the one snarkjs's stock `groth16 setup` derives from the same secrets; its own
// self-check compares it with snarkjs's `powersoftau prepare phase2`.
//
//   node tools/zk/ptau.mjs --self-check <power>

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {fileURLToPath} from "node:url";
import {buildBn128} from "ffjavascript";
import * as snarkjs from "snarkjs";
import {GeneratorMultiples, Scalars, lagrange, powers} from "./curve.mjs";
import {BinWriter, randomScalar} from "./binfile.mjs";

export async function writePtau(file, power, secrets, {prepared = true} = {}) {
    const curve = await buildBn128(true);
    const multiples = new GeneratorMultiples();
    try {
        const {Fr} = curve;
        const {tau, alpha, beta} = secrets;
        const n = 2 ** power;
        const out = new BinWriter(file, "ptau", prepared ? 11 : 7);

        const header = Buffer.alloc(44);
        header.writeUInt32LE(32, 0);
        Buffer.from(curve.q.toString(16).padStart(64, "0"), "hex").reverse().copy(header, 4);
        header.writeUInt32LE(power, 36);
        header.writeUInt32LE(power, 40);
        out.section(1, [header]);

        const tauPowers = powers(Fr, tau, 2 * n - 1);
        const shortPowers = powers(Fr, tau, n);
        out.section(2, [await multiples.mul("G1", tauPowers)]);
        out.section(3, [await multiples.mul("G2", shortPowers)]);
        out.section(4, [await multiples.mul("G1", shortPowers.map((x) => Fr.mul(x, alpha)))]);
        out.section(5, [await multiples.mul("G1", shortPowers.map((x) => Fr.mul(x, beta)))]);
        const betaOnly = new Scalars(Fr, 1);
        betaOnly.set(0, beta);
        out.section(6, [await multiples.mul("G2", betaOnly)]);
        out.section(7, [Buffer.alloc(4)]); // no contribution records

        if (prepared) {
            const sizes = [];
            for (let k = 0; k <= power; k++) sizes.push(await lagrange(Fr, tau, k));
            const all = Scalars.concat(sizes);
            const top = await lagrange(Fr, tau, power + 1, true);
            out.section(12, [await multiples.mul("G1", Scalars.concat([all, top]))]);
            out.section(13, [await multiples.mul("G2", all)]);
            out.section(14, [await multiples.mul("G1", all.map((x) => Fr.mul(x, alpha)))]);
            out.section(15, [await multiples.mul("G1", all.map((x) => Fr.mul(x, beta)))]);
        }
        out.close();
    } finally {
        multiples.close();
        await curve.terminate();
    }
}

async function selfCheck(power) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ptau-check-"));
    try {
        const curve = await buildBn128(true);
        const secrets = {tau: randomScalar(curve.Fr), alpha: randomScalar(curve.Fr), beta: randomScalar(curve.Fr)};
        await curve.terminate();
        const ours = path.join(dir, "ours.ptau");
        const raw = path.join(dir, "raw.ptau");
        const theirs = path.join(dir, "theirs.ptau");
        await writePtau(ours, power, secrets);
        await writePtau(raw, power, secrets, {prepared: false});
        await snarkjs.powersOfTau.preparePhase2(raw, theirs);
        if (!fs.readFileSync(ours).equals(fs.readFileSync(theirs))) {
            throw new Error(`prepared ptau differs from snarkjs's for power ${power}`);
        }
        console.log(`ptau self-check: power ${power} identical to snarkjs prepare phase2`);
    } finally {
        fs.rmSync(dir, {recursive: true, force: true});
    }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
    const [, , flag, power] = process.argv;
    if (flag !== "--self-check") throw new Error("usage: node tools/zk/ptau.mjs --self-check <power>");
    await selfCheck(Number(power));
    process.exit(0);
}
