"""The rooms of `offchain/` and the one direction of their imports (README, "Layout").

`LAYERS` lists the rooms from the bottom up, the one place the order is defined. A module may
import its own room and the rooms of lower layers, never a higher layer nor a sibling room of its
own layer (feeds and risk know nothing of each other; neither do the engine and the keeper).
Every module stays under `MAX_MODULE_LINES`. Classes should stay near 300 lines; one past
`MAX_CLASS_LINES` fails (the engine's single class was 794 before it was split by job).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from offchain.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "offchain"
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),
    ("settings",),
    ("models",),
    ("feeds", "risk"),  # prices in; margin out (numpy, no I/O)
    ("attest",),  # the EIP-712 batch, defined once
    ("chain",),  # bindings, anvil, deploy, client, event mirrors, the one sender
    ("committee", "prove"),  # BLS committee; the prover (model, Groth16 in Python, registry client)
    ("link",),  # venues joined by a link: certificates, pledges, the link's mirror and deploy
    ("sync", "keeper", "backstop"),  # the engine; the keeper and the backstop beside it
    ("lab",),  # drives the engine and the keeper on its own chains
    ("ops",),  # the operator's and trader's commands: signers, funds, venue, views
    ("bench",),
    ("cli",),
)
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400
LAYER = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def room_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_rooms(path: Path) -> set[str]:
    """Rooms of `offchain` this module imports, lazily imported ones included."""
    rooms: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and node.level == 0
            else []
        )
        rooms.update(n.split(".")[1] for n in names if n.startswith("offchain."))
    return rooms


def test_every_room_has_a_layer() -> None:
    assert {room_of(p) for p in MODULES} == set(LAYER)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module__imports_only_its_room_and_lower_layers(path: Path) -> None:
    room = room_of(path)
    upward = sorted(r for r in imported_rooms(path) - {room} if LAYER[r] >= LAYER[room])
    assert not upward, f"{room} (layer {LAYER[room]}) imports {upward}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module__and_its_classes__stay_small(path: Path) -> None:
    text = path.read_text()
    assert text.count("\n") <= MAX_MODULE_LINES
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno is not None
            size = node.end_lineno - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"class {node.name}: {size} lines"


def test_imported_rooms__absolute_lazy_and_aliased_imports__all_found(tmp_path: Path) -> None:
    module = tmp_path / "leak.py"
    module.write_text(
        "import offchain.sync.policy as p\n"
        "from offchain.chain import Chain\n"
        "def f():\n    from offchain.lab import run_lab\n"
        "from . import sibling\n"
    )
    assert imported_rooms(module) == {"sync", "chain", "lab"}
