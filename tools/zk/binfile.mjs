// iden3's binary container (used by .ptau, .zkey, .r1cs and .wtns files): a 4-byte type, a u32
// version, a u32 section count, then sections of (u32 id, u64 size, bytes).

import {randomBytes} from "node:crypto";
import fs from "node:fs";

export class BinWriter {
    constructor(file, type, nSections) {
        this.fd = fs.openSync(file, "w");
        const header = Buffer.alloc(12);
        header.write(type, 0, "ascii");
        header.writeUInt32LE(1, 4);
        header.writeUInt32LE(nSections, 8);
        fs.writeSync(this.fd, header);
    }

    section(id, parts) {
        const header = Buffer.alloc(12);
        header.writeUInt32LE(id, 0);
        header.writeBigUInt64LE(BigInt(parts.reduce((sum, p) => sum + p.byteLength, 0)), 4);
        fs.writeSync(this.fd, header);
        for (const p of parts) fs.writeSync(this.fd, p);
    }

    close() {
        fs.closeSync(this.fd);
    }
}

// Sections by id (each a Buffer); a file with a repeated id is refused.
export function readSections(file, type) {
    const bytes = fs.readFileSync(file);
    if (bytes.toString("ascii", 0, 4) !== type) throw new Error(`${file} is not a ${type} file`);
    const count = bytes.readUInt32LE(8);
    const sections = new Map();
    let at = 12;
    for (let k = 0; k < count; k++) {
        const id = bytes.readUInt32LE(at);
        const size = Number(bytes.readBigUInt64LE(at + 4));
        if (sections.has(id)) throw new Error(`${file}: section ${id} appears twice`);
        sections.set(id, bytes.subarray(at + 12, at + 12 + size));
        at += 12 + size;
    }
    return sections;
}

// A uniformly random non-zero field element (48 random bytes reduced: bias below 2^-128).
export function randomScalar(Fr) {
    for (;;) {
        const x = Fr.e(BigInt("0x" + randomBytes(48).toString("hex")));
        if (!Fr.isZero(x)) return x;
    }
}
