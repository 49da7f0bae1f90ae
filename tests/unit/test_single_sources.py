"""Each piece that issue 10 found copied across src/ lives in one module; a copy that comes back fails here.

The pieces: ``versions()`` and file hashing (``dermadv.runs.provenance``), the outcome / direction /
group names and ``check_direction`` (``dermadv.vocab``), the ISIC 2019 column list
(``dermadv.labels``), the ROC figure (``dermadv.report.figures.roc_plot``) and atomic writes
(``dermadv.fileio``). The package's source is read as syntax trees, never imported module by module.
Legitimate other uses are listed here by (module, function), each with its reason.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import dermadv
from dermadv.labels import ISIC2019_COLUMNS
from dermadv.vocab import DIRECTIONS, OUTCOMES, Group

PACKAGE = Path(dermadv.__file__).resolve().parent


@dataclass(frozen=True)
class Use:
    module: str  # path below the package, e.g. "runs/provenance.py"
    function: str  # qualified name of the enclosing def ("Class.method"), "" at module level
    line: int

    def where(self) -> tuple[str, str]:
        return (self.module, self.function)

    def __str__(self) -> str:
        return f"dermadv/{self.module}:{self.line} ({self.function or 'module level'})"


class Scan:
    """One module's tree with its import aliases (``np`` -> ``numpy``, ``replace`` -> ``os.replace``)."""

    def __init__(self, module: str, source: str) -> None:
        self.module = module
        self.tree = ast.parse(source)
        self.aliases: dict[str, str] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.aliases[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0]
                    )
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"

    def nodes(self) -> Iterator[tuple[ast.AST, str]]:
        """Every node with the qualified name of the def it stands in."""

        def visit(node: ast.AST, scope: str) -> Iterator[tuple[ast.AST, str]]:
            for child in ast.iter_child_nodes(node):
                yield child, scope
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    yield from visit(child, f"{scope}.{child.name}" if scope else child.name)
                else:
                    yield from visit(child, scope)

        yield from visit(self.tree, "")

    def dotted(self, node: ast.AST) -> str | None:
        """``os.replace`` for ``os.replace`` / ``replace`` (imported from os) / ``_os.replace``."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def calls(self, *names: str) -> list[Use]:
        return [
            Use(self.module, scope, node.lineno)
            for node, scope in self.nodes()
            if isinstance(node, ast.Call) and self.dotted(node.func) in names
        ]

    def references(self, name: str) -> list[Use]:
        """Uses of the imported ``name`` (``sklearn.metrics.roc_curve``), called or not."""
        return [
            Use(self.module, scope, node.lineno)
            for node, scope in self.nodes()
            if isinstance(node, (ast.Name, ast.Attribute))
            and isinstance(getattr(node, "ctx", None), ast.Load)
            and self.dotted(node) == name
        ]

    def method_calls(self, attr: str, n_args: int) -> list[Use]:
        """Calls ``x.attr(...)`` with exactly ``n_args`` positional arguments and no keywords."""
        return [
            Use(self.module, scope, node.lineno)
            for node, scope in self.nodes()
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == attr
            and len(node.args) == n_args
            and not node.keywords
        ]

    def defs(self, name: str) -> list[Use]:
        """Functions named ``name``, each as its own qualified name."""
        return [
            Use(self.module, f"{scope}.{name}" if scope else name, node.lineno)
            for node, scope in self.nodes()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name
        ]

    def assigned(self, *names: str) -> list[Use]:
        out = []
        for node, scope in self.nodes():
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                out += [
                    Use(self.module, scope, node.lineno) for t in targets if getattr(t, "id", None) in names
                ]
        return out

    def string_collections(self) -> Iterator[tuple[frozenset[str], Use]]:
        """The string elements of every tuple / list / set literal and of every dict literal's keys
        (only literals of at least two elements, all of them string constants)."""
        for node, scope in self.nodes():
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                elements: list[ast.expr | None] = list(node.elts)
            elif isinstance(node, ast.Dict):
                elements = list(node.keys)
            else:
                continue
            if len(elements) >= 2 and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in elements
            ):
                yield frozenset(e.value for e in elements), Use(self.module, scope, node.lineno)  # type: ignore[union-attr]


@functools.cache
def package() -> tuple[Scan, ...]:
    scans = tuple(
        Scan(p.relative_to(PACKAGE).as_posix(), p.read_text(encoding="utf-8"))
        for p in sorted(PACKAGE.rglob("*.py"))
    )
    assert len(scans) > 50, f"found only {len(scans)} modules under {PACKAGE}"
    return scans


def everywhere(method: str, *args: object) -> list[Use]:
    return [use for scan in package() for use in getattr(scan, method)(*args)]


def outside(uses: list[Use], allowed: set[tuple[str, str]]) -> list[str]:
    return [str(u) for u in uses if u.where() not in allowed and (u.module, "*") not in allowed]


# ----- the scanner finds what it is meant to (else every test below would pass on anything) ------------
COPIES = """
import os as _os
from tempfile import mkstemp
import hashlib, platform
from sklearn.metrics import roc_curve as rc

OUTCOMES = ("failure", "success", "error", "misclassified")
SOURCE = {"mel->nv": "mel", "nv->mel": "nv"}
GROUPS = ["benign", "melanoma"]
COLS = ("image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")

def versions():
    return {"python": platform.python_version()}

class Writer:
    def write(self, path, tmp):
        fd, name = mkstemp(dir=".")
        _os.replace(name, path)
        tmp.replace(path)
        tmp.rename(path)
        return hashlib.sha256(b"x")

def plot(ax, y, s):
    fpr, tpr, _ = rc(y, s)
    ax.set_xlabel("1 - specificity")
"""


def test_the_scanner_finds_every_kind_of_copy() -> None:
    scan = Scan("copy.py", COPIES)
    assert [u.function for u in scan.calls("os.replace", "tempfile.mkstemp")] == ["Writer.write"] * 2
    assert len(scan.method_calls("replace", 1)) == 1 and len(scan.method_calls("rename", 1)) == 1
    assert [u.function for u in scan.calls("hashlib.sha256")] == ["Writer.write"]
    assert [u.function for u in scan.calls("platform.python_version")] == ["versions"]
    assert [u.function for u in scan.defs("versions")] == ["versions"]
    assert [u.function for u in scan.references("sklearn.metrics.roc_curve")] == ["plot"]
    assert len(scan.assigned("OUTCOMES")) == 1
    literals = [s for s, _ in scan.string_collections()]
    assert frozenset(OUTCOMES) in literals and frozenset(DIRECTIONS) in literals
    assert frozenset(Group) in literals and any(len(s & set(ISIC2019_COLUMNS)) >= 7 for s in literals)
    assert [u.function for u in _axis_labels(scan)] == ["plot"]


# ----- atomic writes: dermadv.fileio -------------------------------------------------------------------
#: Renames that are not a file written atomically.
RENAMES_ALLOWED = {
    # a whole reader-study directory built beside its final name and moved into place (fileio writes files)
    ("readerstudy/build.py", "_write_study"),
}


def test_atomic_writes_only_in_fileio() -> None:
    calls = everywhere(
        "calls",
        "os.replace",
        "os.rename",
        "shutil.move",
        "tempfile.mkstemp",
        "tempfile.mktemp",
        "tempfile.NamedTemporaryFile",
    )
    assert {u.module for u in calls} == {"fileio.py"}, outside(calls, {("fileio.py", "*")})
    # Path.replace(target) / Path.rename(target): one argument (str.replace takes two)
    renames = everywhere("method_calls", "replace", 1) + everywhere("method_calls", "rename", 1)
    assert not outside(renames, RENAMES_ALLOWED)
    assert {u.where() for u in renames} == RENAMES_ALLOWED, (
        "an allowed rename is gone: update RENAMES_ALLOWED"
    )


# ----- provenance: versions() and file hashing ---------------------------------------------------------
#: SHA-256 of something that is not a file, each for its own purpose.
SHA256_ALLOWED = {
    ("runs/provenance.py", "file_sha256"),  # the one file hash
    ("campaign/seeds.py", "job_seed"),  # a job's seed from (campaign seed, image, attack)
    ("readerstudy/store.py", "hash_token"),  # readers' tokens are stored hashed
    ("data/splits.py", "dataset_hash"),  # the hash of a selection of (image id, diagnosis)
    ("campaign/store.py", "content_relpath"),  # names a PNG by the SHA-256 of its bytes (in memory)
    ("runs/record.py", "settings_hash"),  # the hash of a run's result settings
    ("evaluate.py", "PartialPredictions.__init__"),  # the resume key of a partial predictions file
    ("robustness/run.py", "_unit_file"),  # names a robustness unit's file by its image ids
}


def test_versions_and_file_hash_only_in_provenance() -> None:
    assert [u.where() for u in everywhere("defs", "versions")] == [("runs/provenance.py", "versions")]
    assert [u.where() for u in everywhere("calls", "platform.python_version")] == [
        ("runs/provenance.py", "versions")
    ]
    hashes = everywhere("calls", "hashlib.sha256", "hashlib.new", "hashlib.file_digest")
    assert not outside(hashes, SHA256_ALLOWED)
    assert {u.where() for u in hashes} == SHA256_ALLOWED, "an allowed use is gone: update SHA256_ALLOWED"


# ----- vocabulary: dermadv.vocab -----------------------------------------------------------------------
def test_outcomes_directions_groups_only_in_vocab() -> None:
    outcomes, directions, groups = frozenset(OUTCOMES), frozenset(DIRECTIONS), frozenset(Group)
    copies = [
        str(use)
        for scan in package()
        if scan.module != "vocab.py"
        for names, use in scan.string_collections()
        if names <= outcomes or names == directions or names == groups
    ]
    assert not copies, f"outcome / direction / group names spelled out again (use dermadv.vocab): {copies}"
    for name in ("check_direction", "check_outcome"):
        assert [u.module for u in everywhere("defs", name)] == ["vocab.py"], name
    again = everywhere("assigned", "OUTCOMES", "DIRECTIONS", "DIRECTION_SOURCE")
    assert {u.module for u in again} == {"vocab.py"}, [str(u) for u in again]


# ----- the ISIC 2019 columns: dermadv.labels -----------------------------------------------------------
def test_isic2019_columns_defined_once() -> None:
    columns = set(ISIC2019_COLUMNS)
    lists = [
        str(use)
        for scan in package()
        for names, use in scan.string_collections()
        if len(names & columns) >= 7
    ]
    assert len(lists) == 1 and lists[0].startswith("dermadv/labels.py:"), lists


# ----- the ROC figure: dermadv.report.figures.roc_plot -------------------------------------------------
def _axis_labels(scan: Scan) -> list[Use]:
    """Functions that label an axis with specificity or sensitivity (a figure in ROC space)."""
    uses = []
    for node, scope in scan.nodes():
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("set_xlabel", "set_ylabel", "xlabel", "ylabel")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ("specificity" in node.args[0].value or "sensitivity" in node.args[0].value)
        ):
            uses.append(Use(scan.module, scope, node.lineno))
    return list({u.where(): u for u in uses}.values())


def test_one_roc_figure() -> None:
    curves = everywhere("references", "sklearn.metrics.roc_curve")
    assert {u.where() for u in curves} == {("report/figures.py", "roc_plot")}, [str(u) for u in curves]
    in_roc_space = [u for scan in package() for u in _axis_labels(scan)]
    allowed = {
        ("report/figures.py", "roc_plot"),
        # readers' operating points (no curve) in a panel of the reader-study figure
        ("readerstudy/analysis.py", "plot_readers"),
    }
    assert not outside(in_roc_space, allowed)


@pytest.mark.parametrize("module", ["vocab.py", "fileio.py", "labels.py", "runs/provenance.py"])
def test_each_single_source_exists(module: str) -> None:
    assert module in {s.module for s in package()}
