"""The import direction of the README's developer section, checked on the source (AST)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mhatheory"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``mhatheory…`` module a file imports (``from a import b`` counts as ``a.b``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("mhatheory")}


MODULES = {_module(p): _imports(p) for p in ROOT.rglob("*.py")}

#: layer → packages it must never import (the machinery sees a loss function only)
FORBIDDEN = {
    "mhatheory.spectral": ("models", "deora", "experiments", "checks", "verify", "cli"),
    "mhatheory.train": ("models", "deora", "experiments", "checks", "verify", "cli"),
    "mhatheory.stability": ("models", "deora", "experiments", "checks", "verify", "cli"),
    "mhatheory.testing": ("models", "deora", "experiments", "checks", "verify", "cli"),
    "mhatheory.models": ("spectral", "deora", "experiments", "checks", "verify", "cli"),
    "mhatheory.attention": ("models", "spectral", "deora", "experiments"),
    "mhatheory.positional": ("attention", "models", "spectral", "deora", "experiments"),
    "mhatheory.deora": ("experiments", "checks", "verify", "cli"),
    "mhatheory.experiments": ("checks", "verify", "cli"),
    "mhatheory.checks": ("verify", "cli"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_run_one_way(layer):
    bad = [(mod, imp) for mod, imps in MODULES.items()
           if mod == layer or mod.startswith(layer + ".")
           for imp in imps for pkg in FORBIDDEN[layer]
           if imp == f"mhatheory.{pkg}" or imp.startswith(f"mhatheory.{pkg}.")]
    assert not bad, bad


def test_no_experiment_module_is_named_like_a_library_module():
    library = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if p.is_dir()}
    experiments = {p.stem for p in (ROOT / "experiments").glob("*.py")} - {"__init__"}
    assert not (library & experiments), library & experiments
