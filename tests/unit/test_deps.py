"""Declared dependencies are the real ones.

deptry (``make test`` runs ``python -m deptry src``, configured in pyproject's ``[tool.deptry]``) checks
that every import in src/ is a declared dependency, but it counts every extra as declared. Here:

- statically, each import of an optional package sits in a module of the extra that provides it, and
  each ``dermadv.errors.require(module, extra, ...)`` names the extra that really declares ``module``;
- at run time, with an extra's packages made unimportable, the CLI still starts and a command that needs
  the extra fails with one line naming it (exit status 2), not a traceback.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from deps_support import ROOT, SRC, assert_names_extra, run_without

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

#: Modules (relative to src/dermadv) that may import an optional package, and the extra(s) they serve.
#: A core module importing an optional package at all is an error, even inside a function.
EXTRA_MODULES: dict[str, set[str]] = {
    "models/keras_adapter.py": {"keras"},
    "models/onnx_adapter.py": {"onnx"},
    "readerstudy/app.py": {"readerstudy"},
    "readerstudy/web.py": {"readerstudy"},
    "readerstudy/reader_routes.py": {"readerstudy"},
    "readerstudy/coordinator_routes.py": {"readerstudy"},
    "readerstudy/store.py": {"readerstudy"},
    "readerstudy/analysis.py": {"readerstudy"},
    "commands/readerstudy.py": {"readerstudy"},
    "attacks/searches/cmaes.py": {"search"},
    "explain/__init__.py": {"explain"},
}


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@functools.cache
def _installed_modules() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _modules_of(dist: str) -> set[str]:
    """Top-level import names of a distribution: pyproject's package_module_name_map, else the installed
    distribution's files, else its name with dashes as underscores."""
    mapped = PYPROJECT["tool"]["deptry"].get("package_module_name_map", {}).get(dist)
    if mapped:
        return {mapped} if isinstance(mapped, str) else set(mapped)
    names = {m for m, dists in _installed_modules().items() if dist in
             {d.lower().replace("_", "-") for d in dists}}  # fmt: skip
    return names or {dist.replace("-", "_")}


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    """(import names of the core dependencies, import names by extra)."""
    project = PYPROJECT["project"]
    core = {m for r in project["dependencies"] for m in _modules_of(_dist_name(r))}
    extras = {
        extra: {m for r in reqs if _dist_name(r) != "dermadv" for m in _modules_of(_dist_name(r))}
        for extra, reqs in project["optional-dependencies"].items()
    }
    return core, extras


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def _third_party(top: str) -> bool:
    return top not in sys.stdlib_module_names and top not in ("dermadv", "__future__")


def test_every_import_belongs_to_the_extra_of_its_module() -> None:
    core, extras = _declared()
    dev = set(PYPROJECT["tool"]["deptry"]["optional_dependencies_dev_groups"])
    optional = {m for e, mods in extras.items() if e not in dev for m in mods} - core
    problems = []
    for path in sorted((SRC / "dermadv").rglob("*.py")):
        rel = path.relative_to(SRC / "dermadv").as_posix()
        allowed = set().union(*(extras[e] for e in EXTRA_MODULES.get(rel, set())))
        for line, top in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if not _third_party(top) or top in core:
                continue
            if top not in optional:
                problems.append(f"src/dermadv/{rel}:{line}: '{top}' is no declared dependency of dermadv")
            elif top not in allowed:
                owners = sorted(e for e, mods in extras.items() if top in mods and e not in dev)
                problems.append(
                    f"src/dermadv/{rel}:{line}: '{top}' (extra {', '.join(owners)}) imported by a module not "
                    f"of that extra (tests/unit/test_deps.py EXTRA_MODULES: "
                    f"{sorted(EXTRA_MODULES.get(rel, []))})"
                )
    assert not problems, "\n".join(problems)


def _require_calls() -> list[tuple[str, int, str, str]]:
    calls = []
    for path in sorted((SRC / "dermadv").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            # require("module", "extra", ...) and the loop in commands/readerstudy.py: for mod in (...)
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require"):
                continue
            mod, extra = node.args[0], node.args[1]
            assert isinstance(extra, ast.Constant), f"{path}:{node.lineno}: require() needs a literal extra"
            names = [mod.value] if isinstance(mod, ast.Constant) else []
            if isinstance(mod, ast.Name):  # for mod in ("a", "b"): require(mod, ...)
                for loop in ast.walk(tree):
                    if isinstance(loop, ast.For) and getattr(loop.target, "id", None) == mod.id:
                        names += [e.value for e in getattr(loop.iter, "elts", [])]
            assert names, f"{path}:{node.lineno}: cannot tell which module require() imports"
            calls += [(path.name, node.lineno, str(n), str(extra.value)) for n in names]
    return calls


def test_require_names_the_extra_that_declares_the_module() -> None:
    _, extras = _declared()
    calls = _require_calls()
    assert {c[2] for c in calls} >= {"onnxruntime", "keras", "ray", "fastapi", "jinja2"}  # the scan sees them
    wrong = [f"{f}:{line}: require({m!r}, {e!r}): extra {e!r} declares {sorted(extras.get(e, []))}"
             for f, line, m, e in calls if m.split(".")[0] not in extras.get(e, set())]  # fmt: skip
    assert not wrong, "\n".join(wrong)


#: Import names of every non-core extra's packages except pydantic, which typer itself needs.
def _all_optional() -> list[str]:
    core, extras = _declared()
    dev = set(PYPROJECT["tool"]["deptry"]["optional_dependencies_dev_groups"])
    return sorted({m for e, mods in extras.items() if e not in dev for m in mods} - core - {"pydantic"})


def test_cli_starts_without_any_extra(tmp_path: Path) -> None:
    mods = _all_optional()
    assert {"keras", "onnxruntime", "fastapi", "ray", "sqlalchemy"} <= set(mods)
    for args in (["--help"], ["attack", "--help"], ["reader-study", "--help"], ["models", "list"]):
        proc = run_without(mods, args, tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)


def test_reader_study_serve_without_fastapi(tmp_path: Path) -> None:
    proc = run_without(["fastapi"], ["reader-study", "serve", str(tmp_path / "study")], tmp_path)
    assert_names_extra(proc, "fastapi", "readerstudy")
