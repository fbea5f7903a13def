#!/usr/bin/env node
// A solc-compatible command line over solc-js (WebAssembly), for machines where no native solc
// can be downloaded. py-solc-x (used by ape-solidity) only needs `--version` and
// `--standard-json [--base-path DIR] [--allow-paths ...]` with the JSON on stdin.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require(path.join(__dirname, "..", "node_modules", "solc"));

const args = process.argv.slice(2);
if (args.includes("--version")) {
  // solc's own two-line format, which py-solc-x parses.
  const v = solc.version().replace(".Emscripten.clang", ".Linux.g++");
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${v}\n`);
  process.exit(0);
}
if (!args.includes("--standard-json")) {
  process.stderr.write("solc-shim: only --version and --standard-json are supported\n");
  process.exit(2);
}
const at = args.indexOf("--base-path");
const basePath = at >= 0 ? args[at + 1] : process.cwd();
const includeRoots = [];
args.forEach((a, i) => { if (a === "--include-path") includeRoots.push(args[i + 1]); });

function findImport(importPath) {
  for (const root of [basePath, ...includeRoots, process.cwd()]) {
    const candidate = path.resolve(root, importPath);
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  }
  return { error: `File not found: ${importPath} (searched ${[basePath, ...includeRoots].join(", ")})` };
}

const input = fs.readFileSync(0, "utf8");
process.stdout.write(solc.compile(input, { import: findImport }));
