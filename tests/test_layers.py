"""The architecture, enforced: which layer of the package may import which (read from the source
with ``ast``, imports inside functions included).

* ``gadgets.runtime`` is generic: it imports nothing else of the package;
* ``gadgets.core`` (the numerical core and its outputs) imports neither the gadgets nor the
  runtime, the application or the simulator; inside it, ``numerics`` imports no other core
  sub-package, ``receive`` and ``calibration`` only ``numerics``, ``output`` only ``numerics``;
* the gadgets (``gadgets/*.py``) may use the core, the runtime and the installed resources, but
  not the application or the simulator;
* the simulator (the scanner's side) uses only the numerical core and the resources;
* ``gadgets.resources`` is a leaf; ``gadgets.app`` may use everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gadgets"

# layer -> the layers it may import (besides itself); a layer is the longest matching prefix
ALLOWED = {
    "gadgets.runtime": set(),
    "gadgets.core.cache": set(),
    "gadgets.core.numerics": {"gadgets.core.cache"},
    "gadgets.core.receive": {"gadgets.core.numerics", "gadgets.core.cache"},
    "gadgets.core.calibration": {"gadgets.core.numerics"},
    "gadgets.core.output": {"gadgets.core.numerics", "gadgets.core.cache"},
    "gadgets.simulator": {"gadgets.core.numerics", "gadgets.resources"},
    "gadgets.resources": set(),
    "gadgets.gadget_modules": {
        "gadgets.core.numerics",
        "gadgets.core.receive",
        "gadgets.core.calibration",
        "gadgets.core.output",
        "gadgets.core.cache",
        "gadgets.runtime",
        "gadgets.resources",
        "gadgets.version",
    },
    "gadgets.app": {"*"},
    "gadgets.version": set(),  # gadgets/__init__.py: the version, nothing else
    "gadgets.core": set(),  # gadgets/core/__init__.py: a docstring
}
SUBPACKAGES = ("app", "core", "runtime", "simulator", "chains", "simulated_raw")


def layer_of(module: str) -> str:
    """The layer a module belongs to (``gadgets.gadget_modules`` for the gadgets themselves)."""
    if module == "gadgets":
        return "gadgets.version"
    for prefix in sorted(ALLOWED, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    parts = module.split(".")
    if len(parts) == 2 and parts[1] not in SUBPACKAGES:
        return "gadgets.gadget_modules"
    raise ValueError(f"{module} belongs to no layer")


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module of the package that ``source`` (the code of ``module``) imports."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}  # "from pkg import module"
    return {m for m in found if m == "gadgets" or m.startswith("gadgets.")}


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``module`` that point the wrong way."""
    own = layer_of(module)
    allowed = ALLOWED[own]
    out = []
    for target in sorted(imported_modules(source, module, is_package)):
        try:
            other = layer_of(target)
        except ValueError:
            continue  # "from gadgets.x import name": the name, not a module
        if other != own and "*" not in allowed and other not in allowed:
            out.append(f"{module} imports {target} ({own} may not use {other})")
    return out


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield ".".join(parts), path, is_package


@pytest.mark.parametrize("module,path,is_package", list(_modules()), ids=lambda v: str(v))
def test_imports_point_down_the_layers(module, path, is_package):
    assert violations(path.read_text(), module, is_package) == []


def test_the_check_catches_wrong_arrows():
    assert violations("from gadgets.core.numerics import b0\n", "gadgets.runtime.server")
    assert violations("import gadgets.runtime.gadget\n", "gadgets.core.numerics.b0")
    assert violations("from gadgets.core.output.qa import render_qa\n", "gadgets.core.numerics.b0")
    assert violations("from gadgets.app.application import application\n", "gadgets.gridding")
    assert violations("def f():\n    from gadgets.tsc_calibration import x\n", "gadgets.runtime.x")
    assert violations("from ...runtime import server\n", "gadgets.core.numerics.b0")
    assert not violations("from gadgets.core.numerics import b0\n", "gadgets.gridding")
    assert not violations("from gadgets.runtime.gadget import Gadget\n", "gadgets.app.cli")


def test_every_package_folder_is_installed():
    """A sub-package missing from pyproject.toml's package list would be missing from a wheel."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    folders = {m for m, _, is_package in _modules() if is_package}
    mapped = set(pyproject["tool"]["setuptools"]["package-dir"])
    assert folders - listed == set()
    assert listed - folders - mapped == set()
    assert mapped == {"gadgets.chains", "gadgets.simulated_raw"}
