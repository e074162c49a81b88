"""Which library code a rule runs, as one short hash, so Snakemake re-runs a job when that code changes.

Snakemake tracks a rule's script but not the modules the script imports. A rule's params therefore carry
`code_fingerprint(script)`: the hash of every quantreplay module the script imports, followed transitively
through the imports inside quantreplay (function-level imports included, the packages' `__init__` files that
importing a submodule runs, and the module of a job named as `"quantreplay.module:function"`, which
quantreplay.warm imports in the job's process), except the modules that only say how a job runs or where its
files lie (`EXECUTION_ONLY`). A module is hashed as its syntax tree without docstrings, so
comments, docstrings and formatting change nothing; any change of code does.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "quantreplay"
# Hex digits kept: 64 bits tell versions apart and stay readable in Snakemake's params.
DIGITS = 16
# How a job runs, not what it computes: an edit of these re-runs nothing through the hash. quantreplay.warm forks
# the job's process (the results are those of a job in its own process, byte for byte); quantreplay.paths says where
# files lie, which Snakemake tracks itself (a job whose inputs or outputs move re-runs), and steps read it only to
# check their inputs: adding a rule's path must not re-run every job of a finished grid.
EXECUTION_ONLY = frozenset({f"{PACKAGE}.warm", f"{PACKAGE}.paths"})
# A job's target as quantreplay.warm.run_job names it.
JOB_TARGET = re.compile(rf"({PACKAGE}(?:\.\w+)*):\w+")


def _module_file(src: Path, module: str) -> Path | None:
    """The file of `module` (dotted, under `src`), or None if it is no module of the package."""
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _statements(body: list[ast.stmt]):
    """Every statement in `body` and in the blocks nested inside it (imports are statements: expressions, the
    bulk of a syntax tree, need no visit)."""
    for node in body:
        yield node
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            inner = getattr(node, block, None)
            if isinstance(inner, list):
                yield from _statements(inner)


def _imported_modules(tree: ast.Module, src: Path) -> set[str]:
    """The package's modules that `tree` imports anywhere in its body."""
    found = set()
    for node in _statements(tree.body):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from quantreplay.data import rows` may name a submodule or an attribute: try both.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= _package_modules(names, src)
    targets = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    found |= _package_modules([m.group(1) for t in targets if (m := JOB_TARGET.fullmatch(t))], src)
    return found


def _package_modules(names: list[str], src: Path) -> set[str]:
    found = set()
    for name in names:
        if (name == PACKAGE or name.startswith(PACKAGE + ".")) and _module_file(src, name) is not None:
            found.add(name)
    return found


def _with_parents(module: str) -> set[str]:
    """`module` and the packages above it, whose `__init__` runs when it is imported."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _code_only(tree: ast.Module) -> ast.Module:
    """`tree` without the docstrings of its module, classes and functions (comments are gone already)."""
    for node in [tree, *_statements(tree.body)]:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


@dataclass(frozen=True)
class _Module:
    imports: frozenset[str]
    digest: str


# Parsed modules by (file, size, mtime): one Snakefile parse fingerprints every rule from one read of each module.
_CACHE: dict[tuple, _Module] = {}


def _module(path: Path, src: Path) -> _Module:
    stat = path.stat()
    key = (str(path.resolve()), str(src.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = frozenset(_imported_modules(tree, src))
        digest = hashlib.sha256(ast.dump(_code_only(tree)).encode()).hexdigest()
        _CACHE[key] = _Module(imports, digest)
    return _CACHE[key]


def library_modules(script: str | Path, src: str | Path) -> list[str]:
    """Every package module that `script` runs, sorted: its imports, their imports, and so on."""
    src = Path(src)
    todo = set(_module(Path(script), src).imports) - EXECUTION_ONLY
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        for name in _with_parents(module) - seen:
            seen.add(name)
            todo |= _module(_module_file(src, name), src).imports - seen - EXECUTION_ONLY
    return sorted(seen)


def code_fingerprint(script: str | Path, src: str | Path) -> str:
    """A hash of the library code that `script` runs (see the module docstring)."""
    src = Path(src)
    digest = hashlib.sha256()
    for module in library_modules(script, src):
        digest.update(f"{module} {_module(_module_file(src, module), src).digest}\n".encode())
    return digest.hexdigest()[:DIGITS]
