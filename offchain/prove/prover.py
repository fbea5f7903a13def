"""The prover: witness and Groth16 proof by snarkjs, in one long-lived node process
(tools/zk/prover.mjs) so that node and snarkjs load once, not once per proof."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from offchain.errors import MarginsyncError, ToolchainError
from offchain.prove.layout import CircuitShape
from offchain.settings import PROJECT_ROOT

ZK_DIR = PROJECT_ROOT / "build" / "zk"
SCRIPT = PROJECT_ROOT / "tools" / "zk" / "prover.mjs"


class StatementFalse(MarginsyncError):
    """The circuit refused the inputs: the claimed requirement is not the model's output, or a
    value is out of its ranges."""


@dataclass(frozen=True)
class Proof:
    """A proof in the contracts' layout (A.x, A.y, B.x.c1, B.x.c0, B.y.c1, B.y.c0, C.x, C.y)."""

    points: tuple[int, ...]
    public: tuple[int, ...]
    witness_s: float
    prove_s: float


def _points(proof: dict[str, Any]) -> tuple[int, ...]:
    a, b, c = proof["pi_a"], proof["pi_b"], proof["pi_c"]
    words = (a[0], a[1], b[0][1], b[0][0], b[1][1], b[1][0], c[0], c[1])
    return tuple(int(w) for w in words)


class Prover:
    def __init__(self, zk_dir: Path = ZK_DIR) -> None:
        self.zk_dir = zk_dir
        self._process: subprocess.Popen[str] | None = None

    def circuit_path(self, shape: CircuitShape) -> Path:
        base = self.zk_dir / shape.name
        if not base.with_suffix(".zkey").exists():
            raise ToolchainError(
                f"the {shape.name} circuit's proving key is missing ({base}.zkey)",
                "run `make install`: it compiles the circuits and runs the development ceremony",
            )
        return base

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._process is None:
            self._process = subprocess.Popen(
                ["node", str(SCRIPT)],
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # The witness calculator prints failed asserts; the answer carries them already.
                stderr=subprocess.DEVNULL,
                text=True,
            )
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise ToolchainError("the node prover stopped", "check `node tools/zk/prover.mjs` runs")
        answer: dict[str, Any] = json.loads(line)
        if not answer["ok"]:
            raise StatementFalse(
                f"the circuit refused the statement ({answer['error']})",
                "the claimed MM/IM must be the model's output for exactly these inputs",
            )
        return answer

    def _request(
        self, shape: CircuitShape, public: Sequence[int], params: Sequence[int], prove: bool
    ) -> dict[str, Any]:
        return {
            "circuit": str(self.circuit_path(shape)),
            "input": {"words": [str(w) for w in public], "paramWords": [str(w) for w in params]},
            "prove": prove,
        }

    def check(self, shape: CircuitShape, public: Sequence[int], params: Sequence[int]) -> float:
        """Computes the witness only (raises `StatementFalse` if a constraint fails); seconds."""
        return float(self._ask(self._request(shape, public, params, prove=False))["witnessSeconds"])

    def check_circuit(self, base: Path, inputs: dict[str, int]) -> None:
        """The witness of any compiled circuit (`base`.r1cs, `base`_js/) for named inputs."""
        request = {"circuit": str(base), "input": {k: str(v) for k, v in inputs.items()}}
        self._ask({**request, "prove": False})

    def prove(self, shape: CircuitShape, public: Sequence[int], params: Sequence[int]) -> Proof:
        answer = self._ask(self._request(shape, public, params, prove=True))
        return Proof(
            points=_points(answer["proof"]),
            public=tuple(int(x) for x in answer["publicSignals"]),
            witness_s=float(answer["witnessSeconds"]),
            prove_s=float(answer["proveSeconds"]),
        )

    def close(self) -> None:
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait(timeout=10)
            self._process = None

    def __enter__(self) -> Prover:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
