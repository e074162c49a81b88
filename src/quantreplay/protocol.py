"""The protocol ablation: which of the authors' protocol factors moves the paper's claims C2 and C3.

One table of factors (`FACTORS`) names the config keys each factor sets; their values are the authors', read from
config/paper_protocol.yaml (their one home), and the clean values are the tier's own defaults. The variants:
`clean` (no factor switched), `authors` (every factor), then each factor alone. Each variant is a normal pipeline
run in its own folder, `<runs>/<variant>/`, on the tier's config, a reduced grid (config/protocol_grid.yaml) and
the variant's overlay (`<runs>/<variant>/protocol.yaml`, the factor's keys at the authors' values).

The variants share everything a factor does not touch. A variant's folder starts as a copy of the finished clean
run (its results, logs, benchmarks and Snakemake's metadata records: `quantreplay.runs.seed_run`), so Snakemake's
rerun triggers re-run only the jobs whose params the factor changes (tests/test_workflow_protocol.py proves which):
an evaluation factor re-scores every checkpoint and trains nothing, a training factor re-trains from the first stage
it changes.
The clean run itself starts, likewise, from a finished run of the tier where there is one (`make run`'s): the
reduced grid's cells are cells of the default grid.

`python -m quantreplay.protocol run` runs every variant in turn and then collects; `collect` writes, from each
variant's findings.csv, `<runs>/protocol_ablation.csv` (one row per variant and claim), `.md` (one row per
variant, and the reading: what each factor does to each claim's every pair), a figure (`protocol_ablation.png` /
`.svg`: each claim's every pair with its interval per variant) and `.html`, the ablation's report page (all three).
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from quantreplay.io import atomic_file, read_csv, write_text
from quantreplay.runs import FINDINGS, seed_run

# Each protocol factor: the config keys (paths of nested keys) it sets to the authors' value. Together they are
# every key of config/paper_protocol.yaml, each in exactly one factor (tests/test_protocol.py).
FACTORS: dict[str, tuple[tuple[str, ...], ...]] = {
    "continuation": (("continuation", "per_precision"),),
    "replay_draw": (("replay", "draw"),),
    "loss_reduction": (("training", "loss_reduction"),),
    "grad_clip_scope": (("training", "grad_clip_scope"),),
    "decoding": tuple(("evaluation", key) for key in ("decoding", "temperature", "top_k", "top_p")),
    "mc_mode": (("evaluation", "mc_mode"),),
    "code_metric": (("evaluation", "code_metric"),),
    "drop_last": (("evaluation", "drop_last"),),
}
CLEAN, AUTHORS = "clean", "authors"
# The claims the ablation follows (quantreplay.findings): C2, quantized minus fp16 on the last stage's forward
# accuracy without replay; C3, the 0.1 % buffer's lift of the first family's retention after the second stage.
CLAIMS = ("C2", "C3")
ABLATION_COLUMNS = ("variant", "switched", "claim", "estimate", "ci_low", "ci_high", "unit", "verdict", "seeds",
                    "shift_from_clean", "detail")  # fmt: skip
# A variant's overlay file, in its run folder.
OVERLAY = "protocol.yaml"


def _get(config: Mapping, path: Sequence[str]):
    node = config
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise KeyError(".".join(path))
        node = node[key]
    return node


def _set(config: dict, path: Sequence[str], value) -> None:
    for key in path[:-1]:
        config = config.setdefault(key, {})
    config[path[-1]] = copy.deepcopy(value)


def factor_overlay(authors: Mapping, factors: Sequence[str]) -> dict:
    """The overlay that switches `factors` (names of FACTORS) to the authors' values in `authors` (the parsed
    config/paper_protocol.yaml): a nested dict of their keys only."""
    overlay: dict = {}
    for factor in factors:
        if factor not in FACTORS:
            raise ValueError(f"unknown protocol factor {factor!r}; choose from {', '.join(FACTORS)}")
        for path in FACTORS[factor]:
            try:
                _set(overlay, path, _get(authors, path))
            except KeyError:
                raise ValueError(f"config/paper_protocol.yaml: no key {'.'.join(path)} (factor {factor})") from None
    return overlay


def variants(authors: Mapping) -> dict[str, dict]:
    """Every variant of the ablation and its overlay, in the table's order: clean (nothing switched), the authors'
    protocol (every factor), then each factor alone."""
    return {
        CLEAN: {},
        AUTHORS: factor_overlay(authors, list(FACTORS)),
        **{factor: factor_overlay(authors, [factor]) for factor in FACTORS},
    }


def switched(variant: str) -> str:
    """What a variant switches to the authors' value, in words."""
    return {CLEAN: "nothing (the clean protocol)", AUTHORS: "every factor (the authors' protocol)"}.get(
        variant, variant
    )


def configfiles(variant_dir: str | os.PathLike, overlay: Mapping, tier: str, grid: str | None) -> list[str]:
    """The --configfile list of a variant's run: the tier, the reduced grid, then its overlay (none for clean: an
    empty config file is refused)."""
    files = [tier] + ([grid] if grid else [])
    return files + ([os.path.join(variant_dir, OVERLAY)] if overlay else [])


def write_overlay(variant_dir: str | os.PathLike, variant: str, overlay: Mapping) -> None:
    """`<variant_dir>/protocol.yaml`: the variant's overlay, with a header saying what it is (nothing for clean)."""
    import yaml

    if not overlay:
        return
    header = (
        f"# Protocol ablation, variant {variant}: {switched(variant)} at the authors' value, from\n"
        "# config/paper_protocol.yaml (written by quantreplay.protocol; edit that file, not this one).\n"
    )
    with atomic_file(Path(variant_dir) / OVERLAY) as tmp:
        tmp.write_text(header + yaml.safe_dump(dict(overlay), sort_keys=True))


def snakemake_command(variant_dir: str | os.PathLike, files: Sequence[str], *, cores: int, snakefile: str,
                      extra: Sequence[str] = ()) -> list[str]:  # fmt: skip
    """The Snakemake call of one variant (the snakemake beside this Python)."""
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    return [snakemake, "--snakefile", snakefile, "--cores", str(cores), "--configfile", *files,
            "--directory", str(variant_dir), *extra]  # fmt: skip


def run_variant(runs: str | os.PathLike, variant: str, overlay: Mapping, *, tier: str, grid: str | None, cores: int,
                snakefile: str = "Snakefile", clean_from: str | os.PathLike | None = None, extra: Sequence[str] = (),
                capture: bool = False) -> subprocess.CompletedProcess:  # fmt: skip
    """Write the variant's overlay, seed its folder (`quantreplay.runs.seed_run`) from the clean run, or the clean
    run's from `clean_from` (a finished run of the tier, e.g. `make run`'s: its cells of the reduced grid are
    reused), and run Snakemake on it."""
    variant_dir = Path(runs) / variant
    variant_dir.mkdir(parents=True, exist_ok=True)
    write_overlay(variant_dir, variant, overlay)
    source = Path(runs) / CLEAN if variant != CLEAN else clean_from
    if source:
        seed_run(source, variant_dir)
    command = snakemake_command(variant_dir, configfiles(variant_dir, overlay, tier, grid), cores=cores,
                                snakefile=snakefile, extra=extra)  # fmt: skip
    return subprocess.run(command, capture_output=capture, text=True, check=False)


# Snakemake removes its lock when it stops, but not when it is killed (SIGKILL, a power cut, a machine taken back):
# the next run in that folder then stops with "Directory cannot be locked".
STALE_LOCK_HINT = ("; its folder holds a Snakemake lock: if no Snakemake runs there now, a killed run left it, and "
                   "`python -m quantreplay.protocol unlock` (or `make unlock`) removes it")  # fmt: skip


def locked(run_dir: str | os.PathLike) -> bool:
    """Whether a Snakemake lock is held in the run folder `run_dir` (by a running Snakemake or a killed one)."""
    locks = Path(run_dir) / ".snakemake" / "locks"
    return locks.is_dir() and any(locks.iterdir())


def unlock_variant(runs: str | os.PathLike, variant: str, overlay: Mapping, *, tier: str, grid: str | None,
                   snakefile: str = "Snakefile") -> subprocess.CompletedProcess | None:  # fmt: skip
    """`snakemake --unlock` in a variant's folder that holds a lock (None where it has none: nothing to do)."""
    variant_dir = Path(runs) / variant
    if not locked(variant_dir):
        return None
    command = snakemake_command(variant_dir, configfiles(variant_dir, overlay, tier, grid), cores=1,
                                snakefile=snakefile, extra=["--unlock"])  # fmt: skip
    return subprocess.run(command, check=False)


def ablation_table(findings: Mapping[str, str | os.PathLike]) -> pl.DataFrame:
    """protocol_ablation.csv: for each variant (name -> its findings.csv, clean first), the rows of CLAIMS, with
    what the variant switched and `shift_from_clean`, its estimate minus the clean run's (null where the deciding
    pair differs, or either has no estimate)."""
    rows = []
    for variant, path in findings.items():
        frame = read_csv(path, schema_overrides={"estimate": pl.Float64, "ci_low": pl.Float64,
                                                 "ci_high": pl.Float64, "seeds": pl.Int64})  # fmt: skip
        by_claim = {r["claim"]: r for r in frame.iter_rows(named=True)}
        for claim in CLAIMS:
            if claim not in by_claim:
                raise ValueError(f"{path}: no {claim} row")
            row = by_claim[claim]
            rows.append({"variant": variant, "switched": switched(variant), "claim": claim,
                         **{c: row.get(c) for c in ("estimate", "ci_low", "ci_high", "unit", "verdict", "seeds",
                                                    "detail")}})  # fmt: skip
    clean = {r["claim"]: r for r in rows if r["variant"] == CLEAN}
    for row in rows:
        base = clean.get(row["claim"])
        same = base is not None and base["unit"] == row["unit"]
        both = row["estimate"] is not None and base is not None and base["estimate"] is not None
        row["shift_from_clean"] = row["estimate"] - base["estimate"] if same and both else None
    schema = (
        {c: pl.String for c in ABLATION_COLUMNS}
        | {"seeds": pl.Int64}
        | {c: pl.Float64 for c in ("estimate", "ci_low", "ci_high", "shift_from_clean")}
    )
    return pl.DataFrame([{c: r.get(c) for c in ABLATION_COLUMNS} for r in rows], schema=schema)


def _pair(row: dict) -> str:
    return row["unit"].split(" (", 1)[1].rstrip(")") if " (" in (row["unit"] or "") else ""


def _cell(row: dict, *, shift: bool) -> str:
    if row["estimate"] is None:
        return row["verdict"]
    pair = _pair(row)
    text = f"{100 * row['estimate']:+.1f} [{100 * row['ci_low']:+.1f}, {100 * row['ci_high']:+.1f}]"
    moved = "" if not shift or row["shift_from_clean"] is None else f", {100 * row['shift_from_clean']:+.1f} vs clean"
    return f"{text} ({pair}{moved}): {row['verdict']}"


def _side(low: float, high: float) -> str:
    return "above 0" if low > 0 else "below 0" if high < 0 else "across 0"


def ablation_reading(table: pl.DataFrame) -> list[str]:
    """What each variant does to each claim beside the clean run, pair by pair (`detail_pairs`): a verdict it
    changes; a pair whose interval it moves to the other side of 0 (above, across, below); a pair it moves by more
    than half the clean interval's width (the yardstick the clean run's own uncertainty gives: a shift between two
    runs has no interval of its own); a claim it cannot measure (the deciding difference 0 with an interval of no
    width); else that every pair stays within that yardstick. Then which variants did which."""
    from quantreplay.findings import detail_pairs, pair_text

    by = {(r["variant"], r["claim"]): r for r in table.iter_rows(named=True)}
    names = [v for v in dict.fromkeys(table["variant"]) if v != CLEAN]
    lines, kinds = [], {"verdict": [], "side": [], "moved": []}
    for variant in names:
        parts = []
        for claim in CLAIMS:
            row, clean = by[variant, claim], by.get((CLEAN, claim))
            if row["estimate"] is None or clean is None or clean["estimate"] is None:
                parts.append(f"{claim} {row['verdict']}, nothing to compare")
                continue
            if row["ci_low"] == row["ci_high"] == row["estimate"] == 0:
                parts.append(f"{claim}'s deciding pair ({_pair(row)}) is 0 with an interval of no width: its "
                             "arms score alike on every test example and seed, so the claim measures nothing "
                             "here")  # fmt: skip
                kinds["verdict"].append(variant)
                continue
            said = []
            if row["verdict"] != clean["verdict"]:
                said.append(f"the verdict goes from {clean['verdict']} to {row['verdict']}")
                kinds["verdict"].append(variant)
            before, after = detail_pairs(clean["detail"]), detail_pairs(row["detail"])
            for label in [k for k in after if k in before]:
                (e0, lo0, hi0), (e1, lo1, hi1) = before[label], after[label]
                half = (hi0 - lo0) / 2
                if _side(lo0, hi0) != _side(lo1, hi1):
                    was, now = pair_text("", e0, lo0, hi0).strip(), pair_text("", e1, lo1, hi1).strip()
                    said.append(f"{label} goes from {_side(lo0, hi0)} to {_side(lo1, hi1)} ({was} -> {now})")
                    kinds["side"].append(variant)
                elif abs(e1 - e0) > half:
                    said.append(f"{label} moves {100 * (e1 - e0):+.1f} points, more than half the clean interval "
                                f"({100 * half:.1f}), and stays {_side(lo1, hi1)}")  # fmt: skip
                    kinds["moved"].append(variant)
            parts.append(f"{claim}: " + ("; ".join(said) if said else "every pair within half the clean interval"))
        lines.append(f"{variant}: " + ". ".join(parts) + ".")
    quiet = [v for v in names if not any(v in k for k in kinds.values())]
    summary = [("change a verdict or measure nothing", kinds["verdict"]),
               ("move a pair's interval to the other side of 0", kinds["side"]),
               ("move a pair by more than half the clean interval", kinds["moved"]),
               ("do none of these", quiet)]  # fmt: skip
    lines.append("Variants that " + "; that ".join(f"{what}: {', '.join(dict.fromkeys(v)) or 'none'}"
                                                   for what, v in summary) + ".")  # fmt: skip
    return lines


def ablation_sections(table: pl.DataFrame) -> list:
    """protocol_ablation.md and .html as sections (quantreplay.aggregate.markdown): one row per variant, C2 and C3
    side by side, with the reading; then each claim's every pair per variant."""
    by = {(r["variant"], r["claim"]): r for r in table.iter_rows(named=True)}
    names = list(dict.fromkeys(table["variant"]))
    seeds = max(table["seeds"].drop_nulls(), default=1)
    caption = (f"The protocol ablation ({seeds} seed(s) per cell): C2 (int8 and nf4 minus fp16 on the last stage's "
               "forward accuracy, no replay) and C3 (the 0.1 % buffer minus none on the first family's retention "
               "after the second stage, per precision), each variant a run with the named factors at the authors' "
               "value. Deciding pair's estimate [95 % paired bootstrap interval] in points, its shift from the "
               "clean run (same pair), and the verdict.")  # fmt: skip
    header = ["variant", "switched to the authors' value", *(f"{c}: estimate [interval] (pair), verdict"
                                                             for c in CLAIMS)]  # fmt: skip
    rows = [[v, switched(v), *(_cell(by[v, c], shift=v != CLEAN) for c in CLAIMS)] for v in names]
    pairs = [[v, c, by[v, c]["detail"]] for v in names for c in CLAIMS if by[v, c]["detail"]]
    every = ("Every pair of each claim, per variant (percent, or points for a difference, [95 % interval]).",
             ["variant", "claim", "every pair"], pairs, [])  # fmt: skip
    return [(caption, header, rows, ablation_reading(table)), every]


TITLE = "The authors' protocol, factor by factor: C2 and C3"


def ablation_markdown(table: pl.DataFrame) -> str:
    """protocol_ablation.md (ablation_sections)."""
    from quantreplay.aggregate import markdown

    return markdown(ablation_sections(table), title=TITLE)


def collect(runs: str | os.PathLike, names: Sequence[str]) -> pl.DataFrame:
    """Write `<runs>/protocol_ablation.{csv,md,html,png,svg}` from the variants `names` (each `<runs>/<name>/` a
    finished run) and return the table; the .html page is the ablation's report: the table, the reading, the
    figure. A variant without findings.csv is a one-line error naming the file."""
    findings = {}
    for name in names:
        path = Path(runs) / name / FINDINGS
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no findings table; run the variant first (make run-protocol)")
        findings[name] = path
    table = ablation_table(findings)
    out = Path(runs) / "protocol_ablation"
    with atomic_file(out.with_suffix(".csv")) as tmp:
        table.write_csv(tmp)
    with atomic_file(out.with_suffix(".md")) as tmp:
        tmp.write_text(ablation_markdown(table))
    from quantreplay.aggregate import html_page
    from quantreplay.findings import detail_pairs
    from quantreplay.plots import protocol_ablation

    pairs_of = {(r["variant"], r["claim"]): (detail_pairs(r["detail"]), _pair(r) or r["claim"])
                for r in table.iter_rows(named=True)}  # fmt: skip
    protocol_ablation(table, pairs_of, CLAIMS, CLEAN, first=(CLEAN, AUTHORS), stem=str(out))

    write_text(out.with_suffix(".html"), html_page(ablation_sections(table), TITLE, images=[out.with_suffix(".png")]))
    return table


def main(argv: Sequence[str] | None = None) -> None:
    import yaml

    parser = argparse.ArgumentParser(prog="python -m quantreplay.protocol", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["run", "dry-run", "collect", "list", "unlock"])
    parser.add_argument("--runs", default="runs/protocol", help="folder of the variants' run folders")
    parser.add_argument("--tier", default="config/config.yaml", help="the tier's config file")
    parser.add_argument("--grid", default="config/protocol_grid.yaml", help="the reduced grid's overlay ('' for none)")
    parser.add_argument("--authors", default="config/paper_protocol.yaml", help="every factor at the authors' value")
    parser.add_argument("--clean-from", default=".", help="a finished run of the tier that the clean run starts from "
                        "where it has none yet (default: the checkout's own, `make run`; '' for none)")  # fmt: skip
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--variants", nargs="*", help="a subset, in order (default: every variant)")
    args = parser.parse_args(argv)
    with open(args.authors) as fh:
        every = variants(yaml.safe_load(fh))
    names = args.variants or list(every)
    unknown = [n for n in names if n not in every]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(every)}")
    if args.action == "list":
        print("\n".join(names))
        return
    if args.action == "unlock":
        for name in names:
            proc = unlock_variant(args.runs, name, every[name], tier=args.tier, grid=args.grid or None)
            if proc is not None and proc.returncode != 0:
                sys.exit(f"protocol variant {name}: snakemake --unlock failed (exit {proc.returncode})")
        return
    if args.action in ("run", "dry-run"):
        extra = ["--dry-run", "--quiet", "rules"] if args.action == "dry-run" else []
        for name in names:
            print(f"== protocol variant {name}: {switched(name)}", flush=True)
            proc = run_variant(args.runs, name, every[name], tier=args.tier, grid=args.grid or None,
                               cores=args.cores, clean_from=args.clean_from or None, extra=extra)  # fmt: skip
            if proc.returncode != 0:
                sys.exit(f"protocol variant {name}: snakemake failed (exit {proc.returncode})"
                         + (STALE_LOCK_HINT if locked(Path(args.runs) / name) else ""))  # fmt: skip
        if args.action == "dry-run":
            return
    table = collect(args.runs, names)
    print(ablation_markdown(table))


if __name__ == "__main__":
    main()
