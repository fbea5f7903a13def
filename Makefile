# marginsync: `make demo` and `make test` set up everything they need on a fresh machine.
# Every step is idempotent: a stamp file records what is done and is redone only when its
# inputs change.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
ANVIL_DIR := $(CURDIR)/node_modules/@foundry-rs/anvil-linux-amd64/bin
FORGE_DIR := $(CURDIR)/node_modules/@foundry-rs/forge-linux-amd64/bin
SOLC_VERSION := 0.8.37
# Tools from node_modules first (Anvil, forge); the venv for python, ape and marginsync.
export PATH := $(CURDIR)/$(BIN):$(ANVIL_DIR):$(FORGE_DIR):$(PATH)
export SOLCX_BINARY_PATH := $(CURDIR)/.solc
PYTEST_WORKERS ?= 2

CONTRACTS := $(shell find contracts -name '*.sol' -not -path 'contracts/.cache/*')
ARTIFACTS := .build/__local__.json
ZK_DIR := build/zk
ZK_KEYS := $(ZK_DIR)/account.zkey $(ZK_DIR)/batch.zkey

.PHONY: all install demo test lint fmt soak bench clean
all: test

install: $(STAMPS)/python $(STAMPS)/node .solc/solc-v$(SOLC_VERSION) $(ARTIFACTS) $(STAMPS)/solcx-home \
	$(ZK_KEYS)

$(STAMPS):
	@mkdir -p $@

$(STAMPS)/python: pyproject.toml | $(STAMPS)
	@echo "==> Python environment ($(VENV))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(STAMPS)/node: package.json package-lock.json | $(STAMPS)
	@echo "==> npm toolchain (Anvil, forge, solc-js, OpenZeppelin)"
	@# The lock lists every platform's optional Anvil/forge binary, so `npm ci` installs exactly
	@# it and never rewrites it (installing leaves `git status` clean).
	npm ci --no-audit --no-fund --loglevel=error
	@test -x $(ANVIL_DIR)/anvil || { echo "Anvil binary missing in $(ANVIL_DIR): delete node_modules and rerun"; exit 1; }
	@touch $@

# A native solc of the right version on PATH wins; otherwise the solc-js shim stands in for it.
.solc/solc-v$(SOLC_VERSION): tools/solc-shim.js $(STAMPS)/node
	@mkdir -p .solc
	@native=$$(command -v solc || true); \
	 if [ -n "$$native" ] && "$$native" --version | grep -q "Version: $(SOLC_VERSION)"; then \
	   echo "==> using native solc at $$native"; ln -sf "$$native" $@; \
	 else \
	   echo "==> using solc-js $(SOLC_VERSION) through tools/solc-shim.js"; ln -sf ../tools/solc-shim.js $@; \
	 fi
	@touch $@

# `ape compile` run by hand (outside make, so without SOLCX_BINARY_PATH) asks py-solc-x, which
# looks in ~/.solcx: link the same solc there, unless a working one of that version is installed.
SOLCX_HOME_SOLC := $(HOME)/.solcx/solc-v$(SOLC_VERSION)
$(STAMPS)/solcx-home: .solc/solc-v$(SOLC_VERSION)
	@if "$(SOLCX_HOME_SOLC)" --version 2>/dev/null | grep -q "Version: $(SOLC_VERSION)"; then \
	   echo "==> ape finds solc $(SOLC_VERSION) in ~/.solcx"; \
	 else \
	   echo "==> linking ~/.solcx/solc-v$(SOLC_VERSION) for ape run by hand"; \
	   { mkdir -p "$(HOME)/.solcx" && ln -sfn "$(CURDIR)/.solc/solc-v$(SOLC_VERSION)" "$(SOLCX_HOME_SOLC)"; } \
	   || echo "    (cannot write ~/.solcx: run ape by hand with SOLCX_BINARY_PATH=$(CURDIR)/.solc)"; \
	 fi
	@touch $@

$(ARTIFACTS): $(CONTRACTS) ape-config.yaml .solc/solc-v$(SOLC_VERSION) $(STAMPS)/python
	@echo "==> ape compile"
	@# --force: ape's incremental build recompiles a changed file but not the contracts that
	@# import it (a changed ClearinghouseBase.sol left a stale Clearinghouse artifact).
	$(BIN)/ape compile --force
	@touch $@

# The margin circuits (circom2 in wasm, from npm) and their development ceremony
# (tools/zk/setup.mjs, docs/proofs.md): each key is made once and kept until its circuit changes.
$(ZK_DIR)/%.r1cs: circuits/%.circom circuits/margin.circom $(STAMPS)/node
	@mkdir -p $(ZK_DIR)
	@echo "==> circom2 $<"
	node_modules/.bin/circom2 $< --r1cs --wasm -l node_modules/circomlib/circuits -o $(ZK_DIR)

$(ZK_DIR)/%.zkey: $(ZK_DIR)/%.r1cs tools/zk/setup.mjs tools/zk/curve.mjs tools/zk/binfile.mjs
	@echo "==> development ceremony for $*"
	node tools/zk/setup.mjs $< $@ $(ZK_DIR)/$*.vkey.json

demo: install
	$(BIN)/marginsync demo

test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

soak: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -m soak -p no:cacheprovider

bench: install
	$(BIN)/marginsync bench all

lint: install
	$(BIN)/ruff check offchain tests scripts
	$(BIN)/ruff format --check offchain tests scripts
	$(BIN)/mypy
	forge fmt --check contracts

fmt: install
	$(BIN)/ruff format offchain tests scripts
	$(BIN)/ruff check --fix offchain tests scripts
	forge fmt contracts

clean:
	rm -rf .build contracts/.cache .solc $(STAMPS) runs build
