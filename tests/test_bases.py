"""The base.json contract, the build_base dispatcher and the hub kind (quantreplay.bases, quantreplay.bases.hub)."""

import subprocess
import sys

import pytest

from quantreplay.bases import BASE_JSON, read_base, resolve_base
from quantreplay.bases.build import build_base
from quantreplay.bases.hub import link_hub_base


def test_importing_bases_loads_no_model_libraries():
    # resolve_base is imported by every Snakemake job and by config checks; it must not pay for torch.
    code = (
        "import sys, quantreplay.bases, quantreplay.io; "
        "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_build_base_hub_writes_base_json_with_stable_format(tmp_path):
    out = tmp_path / "hub"
    info = build_base(output=str(out), spec={"kind": "hub", "source": "org/model"}, tokenizer_data=[], threads=1)
    assert info == {"kind": "hub", "source": "org/model"} == read_base(out)
    # Sorted keys, indent 2, trailing newline: the format every base folder's JSON files share.
    assert (out / BASE_JSON).read_text() == '{\n  "kind": "hub",\n  "source": "org/model"\n}\n'


def test_build_base_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="onnx"):
        build_base(output=str(tmp_path / "x"), spec={"kind": "onnx"}, tokenizer_data=[], threads=1)
    assert not (tmp_path / "x").exists()


def test_link_hub_base_and_resolve(tmp_path):
    out = tmp_path / "hub"
    assert link_hub_base(out, source="meta-llama/Llama-3.1-8B-Instruct") == {
        "kind": "hub",
        "source": "meta-llama/Llama-3.1-8B-Instruct",
    }
    assert [p.name for p in out.iterdir()] == ["base.json"]
    assert resolve_base(out) == "meta-llama/Llama-3.1-8B-Instruct"
    link_hub_base(out, source="/models/local-checkpoint")
    assert resolve_base(out) == "/models/local-checkpoint"
    with pytest.raises(ValueError, match="source"):
        link_hub_base(tmp_path / "bad", source="  ")


@pytest.mark.parametrize(
    "content",
    [None, "not json", '{"kind": "onnx", "source": null}', '{"kind": "hub", "source": ""}', '["toy"]'],
)
def test_resolve_base_rejects_missing_or_invalid(tmp_path, content):
    if content is not None:
        (tmp_path / "base.json").write_text(content)
    with pytest.raises(ValueError, match="base.json"):
        resolve_base(tmp_path)
