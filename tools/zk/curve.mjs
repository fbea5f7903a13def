// BN254 helpers for the development ceremony: Lagrange-basis scalars and fast multiples of the
// generator.
//
// A setup party that knows its secrets can compute every point of a key as one multiple of the
// generator, s·G. ffjavascript's generic scalar multiplication costs ~0.4 ms per G1 point here;
// a fixed-base table (d·2^(8w)·G for each byte position w and byte value d) turns each multiple
// into at most 32 mixed additions, ~6x faster, and the work is spread over worker threads, each
// with its own single-threaded wasm instance called directly (ffjavascript's task messages cost
// more than the additions). The workers are child processes: ffjavascript cannot be imported in a
// worker thread it did not start itself.

import {fork} from "node:child_process";
import os from "node:os";
import {fileURLToPath} from "node:url";
import {buildBn128} from "ffjavascript";

const WINDOWS = 32; // bytes of a scalar
const DIGITS = 255; // non-zero byte values
const CHUNK = 512; // points converted to affine at once

// ------------------------------------------------------------------ scalars
// Scalars travel as Uint8Arrays of n·32 bytes, each ffjavascript's internal (Montgomery) form.
export class Scalars {
    constructor(Fr, n) {
        this.Fr = Fr;
        this.n = n;
        this.buff = new Uint8Array(n * Fr.n8);
    }

    get(i) {
        return this.buff.subarray(i * this.Fr.n8, (i + 1) * this.Fr.n8);
    }

    set(i, x) {
        this.buff.set(x, i * this.Fr.n8);
    }

    map(fn) {
        const out = new Scalars(this.Fr, this.n);
        for (let i = 0; i < this.n; i++) out.set(i, fn(this.get(i), i));
        return out;
    }

    static concat(parts) {
        const out = new Scalars(parts[0].Fr, parts.reduce((sum, p) => sum + p.n, 0));
        let at = 0;
        for (const p of parts) {
            out.buff.set(p.buff, at * p.Fr.n8);
            at += p.n;
        }
        return out;
    }
}

export function powers(Fr, base, n) {
    const out = new Scalars(Fr, n);
    let acc = Fr.one;
    for (let i = 0; i < n; i++) {
        out.set(i, acc);
        acc = Fr.mul(acc, base);
    }
    return out;
}

// L_i(τ) over the domain {ω^i} of size m = 2^log2m: (τ^m − 1)/m · ω^i/(τ − ω^i).
// `withoutTopPower` gives the values snarkjs derives for the top size of a ptau file, whose τ·G1
// section lacks τ^(m−1): L_i(τ) − ω^i·τ^(m−1)/m.
export async function lagrange(Fr, tau, log2m, withoutTopPower = false) {
    const m = 2 ** log2m;
    const out = new Scalars(Fr, m);
    if (m === 1) {
        out.set(0, withoutTopPower ? Fr.zero : Fr.one);
        return out;
    }
    const omega = Fr.w[log2m];
    const invM = Fr.inv(Fr.e(m));
    const tauM = Fr.exp(tau, m);
    const scale = Fr.mul(Fr.sub(tauM, Fr.one), invM);
    const topShare = Fr.mul(Fr.div(tauM, tau), invM);
    const differences = new Scalars(Fr, m);
    let w = Fr.one;
    for (let i = 0; i < m; i++) {
        differences.set(i, Fr.sub(tau, w));
        w = Fr.mul(w, omega);
    }
    const inverses = await Fr.batchInverse(differences.buff);
    w = Fr.one;
    for (let i = 0; i < m; i++) {
        let l = Fr.mul(Fr.mul(scale, w), inverses.subarray(i * Fr.n8, (i + 1) * Fr.n8));
        if (withoutTopPower) l = Fr.sub(l, Fr.mul(w, topShare));
        out.set(i, l);
        w = Fr.mul(w, omega);
    }
    return out;
}

// ------------------------------------------------------------------ multiples of the generator
// One worker's engine: a single-threaded wasm instance with the tables in its own memory.
async function buildEngine() {
    const curve = await buildBn128(true);
    const {tm} = curve;
    const exports = tm.instance.exports;
    const pages = 4096; // 256 MiB: tables and one chunk
    tm.memory.grow(pages);
    tm.u8 = new Uint8Array(tm.memory.buffer);
    tm.u32 = new Uint32Array(tm.memory.buffer);
    const groups = {};
    for (const name of ["G1", "G2"]) {
        const G = curve[name];
        const prefix = name === "G1" ? "g1m" : "g2m";
        const sAffine = G.F.n8 * 2;
        const sJacobian = G.F.n8 * 3;
        const table = tm.alloc(WINDOWS * DIGITS * sAffine);
        const point = new Uint8Array(sAffine);
        let base = G.g;
        for (let w = 0; w < WINDOWS; w++) {
            let multiple = base;
            for (let d = 1; d <= DIGITS; d++) {
                G.toRprLEM(point, 0, multiple);
                tm.setBuff(table + (w * DIGITS + d - 1) * sAffine, point);
                multiple = G.add(multiple, base);
            }
            for (let k = 0; k < 8; k++) base = G.double(base);
        }
        groups[name] = {
            table,
            sAffine,
            sJacobian,
            work: tm.alloc(CHUNK * sJacobian),
            zero: exports[`${prefix}_zero`],
            addMixed: exports[`${prefix}_addMixed`],
            toAffine: exports[`${prefix}_batchToAffine`],
        };
    }
    return {curve, groups};
}

function multiply({curve, groups}, groupName, scalars) {
    const {Fr, tm} = curve;
    const g = groups[groupName];
    const n = scalars.byteLength / Fr.n8;
    const out = new Uint8Array(n * g.sAffine);
    const bytes = new Uint8Array(Fr.n8);
    for (let start = 0; start < n; start += CHUNK) {
        const count = Math.min(CHUNK, n - start);
        for (let i = 0; i < count; i++) {
            const acc = g.work + i * g.sJacobian;
            g.zero(acc);
            Fr.toRprLE(bytes, 0, scalars.subarray((start + i) * Fr.n8, (start + i + 1) * Fr.n8));
            for (let w = 0; w < WINDOWS; w++) {
                if (bytes[w]) g.addMixed(acc, g.table + (w * DIGITS + bytes[w] - 1) * g.sAffine, acc);
            }
        }
        g.toAffine(g.work, count, g.work);
        out.set(tm.u8.subarray(g.work, g.work + count * g.sAffine), start * g.sAffine);
    }
    return out;
}

// A pool of workers; `mul(group, scalars)` returns the affine points s_i·G in snarkjs's LEM
// encoding (zero scalars give the point at infinity, all zero bytes).
export class GeneratorMultiples {
    constructor(workers = Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, 4))) {
        const self = fileURLToPath(import.meta.url);
        this.workers = Array.from({length: workers}, () =>
            fork(self, [WORKER_FLAG], {serialization: "advanced", stdio: "inherit"}),
        );
        this.pending = new Map();
        this.nextId = 0;
        for (const worker of this.workers) {
            worker.on("message", ({id, points, error}) => {
                const {resolve, reject} = this.pending.get(id);
                this.pending.delete(id);
                if (error) reject(new Error(error));
                else resolve(points);
            });
        }
    }

    async mul(groupName, scalars) {
        const n8 = 32;
        const n = scalars.n;
        const share = Math.ceil(n / this.workers.length);
        const parts = this.workers.map((worker, k) => {
            const part = scalars.buff.slice(k * share * n8, Math.min(n, (k + 1) * share) * n8);
            const id = this.nextId++;
            return new Promise((resolve, reject) => {
                this.pending.set(id, {resolve, reject});
                worker.send({id, groupName, scalars: part});
            });
        });
        const results = await Promise.all(parts);
        const out = new Uint8Array(results.reduce((sum, r) => sum + r.byteLength, 0));
        let at = 0;
        for (const r of results) {
            out.set(r, at);
            at += r.byteLength;
        }
        return out;
    }

    close() {
        for (const worker of this.workers) worker.disconnect();
    }
}

const WORKER_FLAG = "--generator-multiples-worker";

if (process.argv[2] === WORKER_FLAG) {
    const engine = buildEngine();
    process.on("message", async ({id, groupName, scalars}) => {
        try {
            process.send({id, points: multiply(await engine, groupName, scalars)});
        } catch (err) {
            process.send({id, error: String(err)});
        }
    });
}
