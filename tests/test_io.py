"""Atomic writers, hashes and package versions (quantreplay.io), on real files."""

import hashlib
import json
import os
import stat
from importlib.metadata import version

import polars as pl
import pytest

from quantreplay.io import (
    atomic_file,
    package_versions,
    sha256_file,
    sha256_files,
    sha256_texts,
    staging_dir,
    write_csv,
    write_json,
    write_parquet,
    write_text,
)


class Boom(Exception):
    pass


def test_atomic_file_replaces_target_and_creates_parents(tmp_path):
    path = tmp_path / "a" / "b" / "out.txt"
    with atomic_file(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".out.txt.partial-")
        tmp.write_text("new")
        assert not path.exists(), "the target appears only when the block succeeds"
    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["out.txt"]


def test_atomic_file_on_exception_leaves_no_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(Boom), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise Boom
    assert os.listdir(tmp_path) == []


def test_atomic_file_on_exception_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(Boom), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise Boom
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_file_on_exception_before_writing(tmp_path):
    with pytest.raises(Boom), atomic_file(tmp_path / "out.txt"):
        raise Boom
    assert os.listdir(tmp_path) == []


def test_write_json_formats(tmp_path):
    obj = {"b": 1, "a": [1, 2], "c": "é"}
    write_json(tmp_path / "default.json", obj)
    assert (tmp_path / "default.json").read_bytes() == json.dumps(obj, indent=1).encode()
    write_json(tmp_path / "record.json", obj, indent=2, sort_keys=True, newline=True)
    assert (tmp_path / "record.json").read_text() == (
        '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1,\n  "c": "\\u00e9"\n}\n'
    )
    write_json(tmp_path / "default_str.json", {"p": tmp_path}, default=str)
    assert json.loads((tmp_path / "default_str.json").read_text()) == {"p": str(tmp_path)}


def test_write_json_failure_keeps_old_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(TypeError):
        write_json(path, {"not serialisable": object()})
    assert path.read_text() == "{}"
    assert os.listdir(tmp_path) == ["x.json"]


def test_write_text_parquet_csv(tmp_path):
    write_text(tmp_path / "t" / "table.md", "| a |\n")
    assert (tmp_path / "t" / "table.md").read_text() == "| a |\n"
    frame = pl.DataFrame({"id": ["1", "2"], "value": [0.5, 1.0]})
    write_parquet(frame, tmp_path / "p" / "rows.parquet")
    assert pl.read_parquet(tmp_path / "p" / "rows.parquet").equals(frame)
    # Same bytes as polars writing the target directly: only the mechanics changed.
    frame.write_parquet(tmp_path / "direct.parquet")
    assert (tmp_path / "p" / "rows.parquet").read_bytes() == (tmp_path / "direct.parquet").read_bytes()
    write_csv(frame, tmp_path / "c" / "rows.csv")
    assert (tmp_path / "c" / "rows.csv").read_text() == "id,value\n1,0.5\n2,1.0\n"
    assert sorted(os.listdir(tmp_path)) == ["c", "direct.parquet", "p", "t"]


def test_staging_dir_replaces_an_existing_folder(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with staging_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.partial-")
        assert list(tmp.iterdir()) == []
        (tmp / "weights.bin").write_bytes(b"\x00\x01")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.json").write_text("{}")
        assert (out / "stale.txt").exists(), "the old folder stays until the new one is complete"
    assert sorted(p.name for p in out.iterdir()) == ["sub", "weights.bin"]
    assert os.listdir(tmp_path) == ["model"]


def test_staging_dir_replaces_a_file_or_link(tmp_path):
    (tmp_path / "target").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    with staging_dir(link) as tmp:
        (tmp / "a").write_text("a")
    assert not link.is_symlink() and (link / "a").read_text() == "a"
    assert (tmp_path / "target").is_dir(), "a link is replaced, not followed"


def test_staging_dir_failure_removes_staging_and_keeps_old(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(Boom), staging_dir(out) as tmp:
        (tmp / "half").write_text("x")
        raise Boom
    assert os.listdir(tmp_path) == ["model"]
    assert (out / "stale.txt").read_text() == "old"


def test_staging_dir_applies_umask_to_private_files(tmp_path):
    mask = os.umask(0o022)
    try:
        with staging_dir(tmp_path / "m") as tmp:
            (tmp / "private").write_text("x")
            (tmp / "private").chmod(0o600)
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "m" / "private").stat().st_mode) == 0o644


def test_sha256_functions_match_hashlib(tmp_path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"abc")
    # Larger than one read chunk, so the chunked loop is exercised.
    data = os.urandom(3 * (1 << 20) + 17)
    big.write_bytes(data)
    assert sha256_file(small) == hashlib.sha256(b"abc").hexdigest()
    assert sha256_file(big) == hashlib.sha256(data).hexdigest()
    assert sha256_files([str(small), big]) == {
        str(small): hashlib.sha256(b"abc").hexdigest(),
        str(big): hashlib.sha256(data).hexdigest(),
    }
    texts = ["ab", "c", "é"]
    assert sha256_texts(texts) == hashlib.sha256('["ab", "c", "é"]'.encode()).hexdigest()
    assert sha256_texts(["ab", "c"]) != sha256_texts(["a", "bc"])


def test_package_versions_returns_installed_versions():
    import polars

    versions = package_versions(["polars", "pytest"])
    assert versions == {"polars": polars.__version__, "pytest": pytest.__version__}
    assert versions["pytest"] == version("pytest")
