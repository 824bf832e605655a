"""The code stays ruff clean and keeps its layers: core never imports Textual, the emulator
imports nothing of the engine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    return str(BIN / name) if (BIN / name).exists() else (shutil.which(name) or name)


def test_ruff_clean() -> None:
    result = subprocess.run([_tool("ruff"), "check", "core", "tui", "tests"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers() -> None:
    result = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def import_circles(*packages: str) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan's strongly
    connected components over grimp's import graph). Imports made only for type checking do
    not count: they never run."""
    import grimp

    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)
    modules = graph.modules
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module) & modules:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return circles


def test_no_import_circles() -> None:
    # A circle means neither side can be understood, tested or moved without the other.
    assert import_circles("core", "tui") == []


def test_no_room_of_the_engine_is_a_hall() -> None:
    # One concern per module: past ~400 lines a file of the engine holds more than one room.
    long = {p.name: n for p in (ROOT / "core" / "engine").glob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_only_the_store_speaks_sql() -> None:
    # One owner of the session schema: every query is a named operation of core/store/.
    # core/places.py reads PROJ's own database (read-only), which is not a session;
    # core/backends/earthengine.py executes googleapiclient requests (HTTP, not SQL).
    allowed = {ROOT / "core" / "places.py", ROOT / "core" / "backends" / "earthengine.py"}
    speaking = []
    for path in sorted((ROOT / "core").rglob("*.py")) + sorted((ROOT / "tui").rglob("*.py")):
        if "store" in path.relative_to(ROOT).parts[:2] or path in allowed:
            continue
        text = path.read_text()
        if "import sqlite3" in text or ".execute(" in text or "executemany(" in text:
            speaking.append(str(path.relative_to(ROOT)))
    assert speaking == []


STATE_WORDS = ("pending|submitting|queued|running|exported|downloading|done|backoff|failed|"
               "cancelled|split|listed|verified|deleted|PENDING|RUNNING|CANCELLING|"
               "SUCCEEDED|FAILED|CANCELLED")


def state_literals(path: Path) -> list[str]:
    """String literals of a module that are a state name, or SQL that quotes one ('done'):
    comments and docstrings aside (prose may say "done")."""
    import io
    import re
    import tokenize

    whole = re.compile(rf"^[rbuRBU]*(['\"])({STATE_WORDS})\1$")
    quoted = re.compile(rf"'({STATE_WORDS})'")
    found = []
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.STRING:
            continue
        before = next((t for t in reversed(tokens[:i]) if t.type not in (
            tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.COMMENT)), None)
        if before is None or tok.string.startswith('"""'):
            continue  # docstrings, and the schema's history (migrations are written once)
        if before.string == "[" or (before.string == "(" and tokens[i - 2].string == "get"):
            continue  # a key of Google's JSON ("done": the operation has finished)
        if whole.match(tok.string) or (quoted.search(tok.string) and "SELECT" in tok.string
                                        + "".join(t.string for t in tokens[i - 3:i + 3])):
            found.append(f"{path.relative_to(ROOT)}:{tok.start[0]}: {tok.string}")
    return found


def test_states_are_named_in_one_module() -> None:
    # Unit, attempt, file and command states live in core/states.py; everyone else imports
    # them. (The emulator is Google's side, with Google's own words.)
    found = []
    for path in sorted((ROOT / "core").rglob("*.py")) + sorted((ROOT / "tui").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("core", "emulator") or rel == Path("core/states.py"):
            continue
        found += state_literals(path)
    assert found == []
