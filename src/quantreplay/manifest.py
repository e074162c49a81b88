"""Artifacts that prove they are whole: a manifest of sha256 per file beside every artifact a later step reads.

The steps that build a model or data artifact (a task split, a base folder, a replay mix, a stage's adapter
folder: `paths.MANIFESTED`) write `<artifact>.manifest.json` beside it (`paths.PATHS["manifest"]`) when the
artifact is complete: atomically and last, so its presence means the artifact is whole. It lists every file of
the artifact (for a folder, every file under it, by relative name) with its size and sha256.

Every step checks its inputs first (`check_inputs`): each file must exist, have its size and its hash, and a
folder may hold no file that its manifest does not list (a stray shard or config would change what loads). An
artifact of the pipeline without a manifest is incomplete. A file the pipeline does not build (a user's data file,
a local checkpoint used in place) needs no manifest; its headers are checked (`quantreplay.io.check_readable`).
Whatever is wrong is one `CorruptInput` naming the file, whose line (`error_line`) adds the command that rebuilds
it; the scripts print it and stop (`quantreplay.errors.one_line_errors`). `python -m quantreplay.manifest results`
checks every artifact of a run.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from quantreplay import paths
from quantreplay.io import CorruptInput, check_readable, read_json, sha256_file, write_json

# Hex digits of a hash that an error line shows: enough to compare by eye, short enough for one line.
SHOWN_DIGITS = 12


def manifest_path(artifact: str | os.PathLike) -> Path:
    """Where the manifest of `artifact` (a file or a folder) lies: beside it."""
    return Path(paths.PATHS["manifest"].format(artifact=os.fspath(artifact).rstrip("/")))


def _artifact_files(artifact: Path) -> dict[str, Path]:
    """{name in the manifest: file}: a folder's files by their path under it, or the file by its own name.

    Hidden files are no part of a folder: Snakemake marks a finished folder with `.snakemake_timestamp`, and no
    loader reads a hidden file (nor the litter that file browsers and editors leave)."""
    if not artifact.is_dir():
        return {artifact.name: artifact}
    files = {}
    for path in sorted(artifact.rglob("*")):
        name = path.relative_to(artifact).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in name.split("/")):
            files[name] = path
    return files


def write_manifest(artifact: str | os.PathLike) -> Path:
    """Hash every file of the complete `artifact` and write its manifest atomically; returns the manifest's path.
    Call it last, once the artifact is in place."""
    artifact = Path(artifact)
    files = {
        name: {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        for name, path in _artifact_files(artifact).items()
    }
    record = {"artifact": artifact.name, "folder": artifact.is_dir(), "files": files}
    out = manifest_path(artifact)
    write_json(out, record, indent=1, sort_keys=True, newline=True)
    return out


def _read_manifest(artifact: Path, manifest: Path) -> dict:
    record = _read_json_of(manifest, artifact)
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)
        for e in files.values()
    ):
        expected = "expected {'files': {name: {'bytes', 'sha256'}}}"
        raise CorruptInput(manifest, f"is no manifest: {expected}", artifact=artifact)
    if record.get("folder") != artifact.is_dir():
        kind = "a folder" if record.get("folder") else "a file"
        raise CorruptInput(artifact, f"is not {kind} as its manifest ({manifest}) says", artifact=artifact)
    return files


def _read_json_of(path: Path, artifact: Path):
    """`read_json(path)`; its CorruptInput names `artifact` as the thing to rebuild."""
    try:
        return read_json(path)
    except CorruptInput as error:
        raise CorruptInput(error.path, error.problem, artifact=artifact) from None


def check_artifact(artifact: str | os.PathLike, *, required: bool | None = None) -> None:
    """Check `artifact` (a file or a folder) against its manifest; CorruptInput naming the first file that is
    missing, has another size or hash, or is not listed. `required`: whether a missing manifest is an error (by
    default, for the artifacts the pipeline builds, `paths.MANIFESTED`); without one, only headers are checked."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise CorruptInput(artifact, "is missing")
    manifest = manifest_path(artifact)
    if required is None:
        found = paths.producer(artifact)
        required = found is not None and found[2] in paths.MANIFESTED
    if not manifest.exists():
        if required:
            raise CorruptInput(artifact, f"has no manifest ({manifest}): it was not written completely")
        for path in _artifact_files(artifact).values():
            check_readable(path, artifact=artifact)
        return
    files = _read_manifest(artifact, manifest)
    present = _artifact_files(artifact)
    for name, entry in files.items():
        path = present.get(name, artifact / name if artifact.is_dir() else artifact)
        if name not in present:
            raise CorruptInput(path, f"is missing (its manifest {manifest} lists it)", artifact=artifact)
        size = path.stat().st_size
        if size != entry["bytes"]:
            problem = f"does not match its manifest ({size} bytes, {entry['bytes']} written)"
            raise CorruptInput(path, problem, artifact=artifact)
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            problem = (
                f"does not match its manifest (sha256 {digest[:SHOWN_DIGITS]}, "
                f"{entry['sha256'][:SHOWN_DIGITS]} written)"
            )
            raise CorruptInput(path, problem, artifact=artifact)
    for name, path in present.items():
        if name not in files:
            raise CorruptInput(path, f"is not in its folder's manifest ({manifest})", artifact=artifact)


def _flatten(paths: Iterable) -> Iterator[str]:
    for p in paths:
        if p is None:
            continue
        if isinstance(p, (str, os.PathLike)):
            yield os.fspath(p)
        else:
            yield from _flatten(p)


def check_inputs(*paths) -> None:
    """`check_artifact` of every input a step reads (paths, lists of paths, or None for an absent input)."""
    for path in _flatten(paths):
        check_artifact(path)


def rebuild_command(artifact: str | os.PathLike) -> str | None:
    """The command that rebuilds `artifact` (re-running the rule that writes it), None for a file the pipeline
    does not build. Run it with the --configfile and --directory of the run that built the artifact."""
    found = paths.producer(artifact)
    if found is None:
        return None
    rule, target, _ = found
    return shlex.join(["snakemake", "--cores", "all", "--forcerun", rule, "--", target])


def error_line(error: CorruptInput) -> str:
    """The one line a step prints for `error`: `Corrupt input: <file> <problem>; rebuild it with: <command>`."""
    command = rebuild_command(error.artifact)
    remedy = f"rebuild it with: {command}" if command else "the pipeline does not build it: fix or replace it"
    return f"Corrupt input: {error}; {remedy}"


def main(argv: Sequence[str] | None = None) -> None:
    """Check every artifact that has a manifest under the given folders (default `results`): one line per
    corrupt one, and exit status 1 if there is any. `snakemake -n` looks at dates, not at contents."""
    folders = list(argv if argv is not None else sys.argv[1:]) or ["results"]
    suffix = paths.PATHS["manifest"].format(artifact="")
    bad = checked = 0
    for folder in folders:
        for manifest in sorted(Path(folder).rglob("*" + suffix)):
            checked += 1
            try:
                check_artifact(str(manifest)[: -len(suffix)], required=True)
            except CorruptInput as error:
                bad += 1
                print(error_line(error))
    print(f"{checked} artifacts checked, {bad} corrupt", file=sys.stderr)
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
