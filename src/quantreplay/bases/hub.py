"""The hub base: a Hugging Face Hub id or a local checkpoint, used in place; nothing is copied or fetched."""

from __future__ import annotations

import os

from quantreplay.bases import BASE_JSON, write_record
from quantreplay.io import staging_dir


def link_hub_base(out_dir: str | os.PathLike, *, source: str) -> dict:
    """Record a Hub id or local checkpoint path as the base, used in place: writes only `base.json`.

    No weights are copied and nothing is fetched; `from_pretrained(resolve_base(out_dir))` does that later.
    Returns the content of base.json.
    """
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"link_hub_base: source must be a non-empty Hub id or path, got {source!r}")
    info = {"kind": "hub", "source": source}
    with staging_dir(out_dir) as tmp:
        write_record(tmp / BASE_JSON, info)
    return info
