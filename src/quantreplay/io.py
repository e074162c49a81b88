"""Writing the pipeline's files: atomically, so an interrupted job never leaves a complete-looking output.

Snakemake decides what to re-run from which outputs exist, so a half-written file or folder that exists is worse
than none. Every writer here assembles its output under a hidden temporary name beside the target (same folder,
so the final `os.replace` is a rename on one file system, which POSIX makes atomic) and moves it into place only
when complete; on an exception the temporary is removed and the target is left as it was. Also here: the
content hashes and package versions that the run reports record, and the readers that turn an unreadable input
into one `CorruptInput` naming the file (quantreplay.manifest checks inputs against what their producer wrote).
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

from quantreplay.errors import OneLineError

if TYPE_CHECKING:
    # Annotation only: the writers call methods of the frame, so this module itself needs no polars.
    import polars as pl

# Reads of this size (1 MiB) are large enough to be I/O-bound and small enough to keep memory flat.
HASH_CHUNK_BYTES = 1 << 20
# A reader's own error text is cut to this many characters: the line names the file and the cause, not a dump.
REASON_CHARS = 160


class CorruptInput(OneLineError, ValueError):
    """An input is missing, unreadable or not what its producer wrote. The message is one line: the file, then
    what is wrong with it. `artifact` is what the pipeline builds as a whole (the folder a file lies in, or the
    file itself), the thing to rebuild; the scripts print `line()` and stop (quantreplay.errors.one_line_errors).
    """

    def __init__(self, path: str | os.PathLike, problem: str, *, artifact: str | os.PathLike | None = None):
        self.path = str(path)
        self.problem = problem
        self.artifact = str(path if artifact is None else artifact)
        super().__init__(f"{self.path} {problem}")

    def line(self) -> str:
        # The rebuild command comes from the DAG's path table, which only manifest (and grid) know.
        from quantreplay.manifest import error_line

        return error_line(self)


def _reason(error: BaseException) -> str:
    """A reader's error as a short single line (polars and pyarrow errors span several lines)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


def unreadable(path: str | os.PathLike, error: BaseException, *, artifact=None) -> CorruptInput:
    """The CorruptInput for a file that a reader failed on."""
    if isinstance(error, FileNotFoundError):
        return CorruptInput(path, "is missing", artifact=artifact)
    return CorruptInput(path, f"is unreadable ({type(error).__name__}: {_reason(error)})", artifact=artifact)


def read_parquet(path: str | os.PathLike, **kwargs) -> pl.DataFrame:
    """`polars.read_parquet(path, **kwargs)`; CorruptInput naming the file if it is missing or unreadable."""
    import polars as pl

    try:
        return pl.read_parquet(path, **kwargs)
    except Exception as error:  # polars raises several types (ComputeError, OSError, ColumnNotFoundError, ...)
        raise unreadable(path, error) from None


def read_csv(path: str | os.PathLike, **kwargs) -> pl.DataFrame:
    """`polars.read_csv(path, **kwargs)`; CorruptInput naming the file if it is missing or unreadable."""
    import polars as pl

    try:
        return pl.read_csv(path, **kwargs)
    except Exception as error:
        raise unreadable(path, error) from None


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document at `path` (UTF-8); CorruptInput naming the file if it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise unreadable(path, error) from None


def check_readable(path: str | os.PathLike, *, artifact=None) -> None:
    """Cheap structural check of one file by its suffix, reading headers only: a safetensors header that covers
    the file, a parquet footer, a JSON document. CorruptInput naming the file if it fails; other suffixes pass."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "np"):
                pass
        elif path.suffix == ".parquet":
            import polars as pl

            pl.read_parquet_schema(path)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except Exception as error:
        raise unreadable(path, error, artifact=artifact) from None


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
