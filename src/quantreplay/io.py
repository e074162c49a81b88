"""Writing the pipeline's files: atomically, so an interrupted job never leaves a complete-looking output.

Snakemake decides what to re-run from which outputs exist, so a half-written file or folder that exists is worse
than none. Every writer here assembles its output under a hidden temporary name beside the target (same folder,
so the final `os.replace` is a rename on one file system, which POSIX makes atomic) and moves it into place only
when complete; on an exception the temporary is removed and the target is left as it was. Also here: the
content hashes and package versions that the run reports record.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Annotation only: the writers call methods of the frame, so this module itself needs no polars.
    import polars as pl

# Reads of this size (1 MiB) are large enough to be I/O-bound and small enough to keep memory flat.
HASH_CHUNK_BYTES = 1 << 20


def _partial(path: Path) -> Path:
    """The hidden temporary sibling of `path`; the pid keeps two concurrent jobs (which Snakemake should never
    start) from sharing one."""
    return path.parent / f".{path.name}.partial-{os.getpid()}"


def _apply_umask(folder: Path) -> None:
    """Give files the permissions the user's umask asks for; safetensors writes via a private (0600) temp file,
    which would hide a shared cluster's model folders from the rest of the group."""
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            # 0o666: ordinary read/write for everyone before the umask removes bits, as open() does.
            path.chmod(0o666 & ~mask)


@contextmanager
def staging_dir(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden sibling of `out_dir`; on success it replaces `out_dir`, on failure it is removed.

    An existing `out_dir` (folder, file or link) is removed only once the new folder is complete.
    """
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(out_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _apply_umask(tmp)
    if out_dir.is_dir() and not out_dir.is_symlink():
        shutil.rmtree(out_dir)
    elif out_dir.exists() or out_dir.is_symlink():
        out_dir.unlink()
    os.replace(tmp, out_dir)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write instead of `path`; on success it replaces `path`, on failure it
    is removed. Creates the parent folders.

    The temporary name does not end like `path`, so writers that infer a format from the suffix (matplotlib)
    need the format passed explicitly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(
    path: str | os.PathLike,
    obj: Any,
    *,
    indent: int = 1,
    sort_keys: bool = False,
    newline: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write `obj` as JSON to `path` atomically: `json.dumps(obj, indent=..., sort_keys=..., default=...)`, then a
    newline if `newline`. ASCII-only output (json's default), so the bytes do not depend on the locale."""
    write_text(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + ("\n" if newline else ""))


def write_parquet(frame: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write `frame` to `path` as parquet, atomically."""
    with atomic_file(path) as tmp:
        frame.write_parquet(tmp)


def write_csv(frame: pl.DataFrame, path: str | os.PathLike) -> None:
    """Write `frame` to `path` as CSV, atomically."""
    with atomic_file(path) as tmp:
        frame.write_csv(tmp)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of the file at `path`, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """{path as given (str): hex sha256} for each file."""
    return {str(p): sha256_file(p) for p in paths}


def sha256_texts(texts: Sequence[str]) -> str:
    """Hex sha256 of a list of texts, as one JSON array (UTF-8)."""
    # JSON encoding keeps document boundaries unambiguous (["ab", "c"] and ["a", "bc"] hash differently).
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode("utf-8")).hexdigest()


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """{name: installed version} from the packages' metadata, without importing them."""
    from importlib.metadata import version

    return {name: version(name) for name in names}
