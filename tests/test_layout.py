"""The package's import rules are import-linter contracts (``[tool.importlinter]`` in
pyproject.toml): checked on the source here, and shown to fail on a planted violation."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mhatheory"


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` over the package under ``root`` with the contracts of ``root``'s
    pyproject.toml (the package found first on ``sys.path``: ``root``)."""
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": str(exe.parent)})


def test_every_import_contract_is_kept():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """A copy of the package and its pyproject.toml, to plant violations in."""
    root = tmp_path_factory.mktemp("layout")
    shutil.copytree(PACKAGE, root / "mhatheory", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize("where, line, contract", [
    ("spectral/_lanczos.py", "from mhatheory.models import deora  # planted", "toolkit"),
    ("experiments/heads/plots.py", "from mhatheory.experiments.heads import check  # planted",
     "Inside an experiment"),
    ("experiments/spectrum/experiment.py", "from mhatheory.experiments import heads  # planted",
     "Experiments do not import each other"),
    ("distributed/_errors.py", "from mhatheory.distributed import _rendezvous  # planted",
     "No import cycles"),
])
def test_a_planted_violation_breaks_its_contract(copy, where, line, contract):
    path = copy / "mhatheory" / where
    original = path.read_text()
    try:
        path.write_text(original + "\n" + line + "\n")
        out = _lint(copy)
    finally:
        path.write_text(original)
    assert out.returncode != 0, out.stdout
    broken = [ln for ln in out.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(contract in ln for ln in broken), out.stdout


def test_importing_the_toolkit_loads_none_of_the_study():
    study = ("deora", "models", "tasks", "data", "losses", "attention", "positional",
             "symmetry", "trends", "plots", "checks", "experiments", "report", "verify", "cli")
    code = ("import sys, mhatheory.spectral, mhatheory.train, mhatheory.stability, "
            "mhatheory.testing, mhatheory.distributed\n"
            "print(sorted(m for m in sys.modules if m.startswith('mhatheory.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    loaded = {m.split(".")[1] for m in eval(out.stdout)}
    assert not loaded & set(study), loaded & set(study)


def test_a_submodule_loads_on_first_use_as_an_attribute():
    """``import mhatheory`` loads no submodule, and ``mhatheory.attention.…`` (as the README
    writes it) loads that one on first use; a name that is no submodule is an AttributeError."""
    code = ("import sys, mhatheory\n"
            "before = sorted(m for m in sys.modules if m.startswith('mhatheory.'))\n"
            "fn = mhatheory.attention.flax_attention_fn\n"
            "print(before, 'mhatheory.attention' in sys.modules, hasattr(mhatheory, 'nope'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split() == ["['mhatheory._numerics']", "True", "False"], out.stdout


def test_no_experiment_is_named_like_a_library_module():
    library = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir()
                                                         if p.is_dir()}
    experiments = {p.name for p in (PACKAGE / "experiments").iterdir()
                   if (p / "experiment.py").exists()}
    assert experiments and not (library & experiments), library & experiments
