"""The import rules of ARCHITECTURE.md: priors and networks never reach up, and import neither Lightning nor Hydra."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import priorfit

PACKAGE = Path(priorfit.__file__).parent
VOCABULARY = {
    "priorfit.errors",
    "priorfit.gmm",
    "priorfit._validation",
    "priorfit._files",
    "priorfit._allocator",
    "priorfit.domain",
}
FORBIDDEN_LIBRARIES = ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf", "wandb")
# known upward imports: the deprecated DistributionTransformer.from_pretrained shim, removed in 0.2 (ARCHITECTURE.md);
# none may be added
KNOWN_EXCEPTIONS = {("networks/distribution_transformer.py", "priorfit.checkpoint")}


def _imports(path: Path) -> set[str]:
    """Every module a file imports: top-level, inside functions, and ``importlib.import_module("...")``."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; write the absolute priorfit.* name")
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(node.args[0].value)
    return found


def _allowed_for(layer: str, module: str) -> bool:
    if not module.startswith("priorfit"):
        return not module.startswith(FORBIDDEN_LIBRARIES)
    own = f"priorfit.{layer}"
    return module == "priorfit" or module.startswith(own) or any(module.startswith(v) for v in VOCABULARY)


@pytest.mark.parametrize("layer", ["priors", "networks"])
def test_priors_and_networks_import_only_themselves_and_the_vocabulary(layer):
    violations = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        for module in _imports(path):
            known = any(relative == where and module.startswith(what) for where, what in KNOWN_EXCEPTIONS)
            if not _allowed_for(layer, module) and not known:
                violations.append(f"{relative} imports {module}")
    assert not violations, "\n".join(violations)


def test_tasks_never_reach_the_application_layer_or_hydra():
    below = ("priorfit.tasks", "priorfit.priors", "priorfit.networks", "priorfit.registry", *VOCABULARY)
    violations = []
    for path in sorted((PACKAGE / "tasks").rglob("*.py")):
        for module in _imports(path):
            if module.startswith("hydra") or (module.startswith("priorfit.") and not module.startswith(below)):
                violations.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not violations, "\n".join(violations)


def test_every_error_class_lives_in_errors_py():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception")):
                raise AssertionError(f"{path.relative_to(PACKAGE)} defines {node.name}: move it to priorfit/errors.py")


def test_the_known_exceptions_still_exist():
    """An exception that was removed must leave the list too, so the list only shrinks."""
    for relative, module in KNOWN_EXCEPTIONS:
        assert module in _imports(PACKAGE / relative), f"{relative} no longer imports {module}: drop it from the list"


def test_the_vocabulary_imports_nothing_above_it():
    for name in VOCABULARY:
        path = PACKAGE / (name.split(".", 1)[1] + ".py")
        for module in _imports(path):
            in_vocabulary = any(module == v or module.startswith(v + ".") for v in VOCABULARY)
            assert not module.startswith("priorfit") or in_vocabulary, f"{name} imports {module}"


def test_importing_priors_and_networks_loads_neither_lightning_nor_hydra():
    script = (
        "import sys, priorfit.priors, priorfit.networks, priorfit.registry\n"
        f"loaded = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_LIBRARIES!r}]\n"
        "print(loaded)\n"
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_is_laid_out_as_it_imports():
    """No package-dir remapping: every subpackage is a folder under priorfit/ (a checkout imports as installed)."""
    for name in ("priors", "networks", "tasks", "conf", "diagnostics"):
        assert (PACKAGE / name / "__init__.py").exists(), name
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert "[tool.setuptools.package-dir]" not in pyproject
