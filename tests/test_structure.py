"""The package's shape: no module imports one that imports it back, and the client and peers load without PyTorch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import audiodenoise

PACKAGE = Path(audiodenoise.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports, at any depth of its code."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                submodules = {f"{target}.{alias.name}" for alias in node.names} & modules.keys()
                found |= submodules or {target}  # "from . import media" imports the module, not the package
        graph[name] = {target for target in found if target in modules and target != name}
    return graph


def test_no_module_imports_one_that_imports_it_back():
    graph = package_imports()

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            current = todo.pop()
            if current == goal:
                return True
            if current not in seen:
                seen.add(current)
                todo += graph[current]
        return False

    circles = sorted(f"{a} -> {b} -> ... -> {a}" for a in graph for b in graph[a] if reaches(b, a))
    assert not circles, circles
    assert {"audiodenoise.denoiser", "audiodenoise.limits"} <= graph["audiodenoise.server"]  # imports are seen


@pytest.mark.parametrize("module", ["client", "peers"])  # peers: so a peer's whole process is timed without torch
def test_these_import_without_torch(module):
    code = f"import sys, audiodenoise.{module}; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
