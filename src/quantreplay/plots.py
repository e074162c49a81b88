"""Figures of the study from the aggregated tables and the training reports (seaborn; PNG and SVG).

Each function takes frames and an output stem, and writes `<stem>.png` and `<stem>.svg`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

# Files only, no display: figures are made in batch jobs.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import seaborn as sns  # noqa: E402

from quantreplay.io import atomic_file, read_csv, read_json  # noqa: E402

# Dots per inch of the PNGs: sharp in the HTML report without megabyte files.
DPI = 150


def _save(fig, stem: str) -> None:
    """Write `fig` as PNG and SVG (each atomically) and free it."""
    # The temporary names end in ".partial-<pid>", so the format is given rather than inferred from the name.
    with atomic_file(f"{stem}.png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    with atomic_file(f"{stem}.svg") as tmp:
        fig.savefig(tmp, format="svg", bbox_inches="tight")
    plt.close(fig)


def _buffer_order(buffers: Sequence[str]) -> list[str]:
    """Fractions by value, then per-task counts (n<count>) by count."""
    fractions = sorted((b for b in buffers if not b.startswith("n")), key=float)
    counts = sorted((b for b in buffers if b.startswith("n")), key=lambda b: int(b[1:]))
    return fractions + counts


def _percent_label(buffer: str) -> str:
    return f"{100 * float(buffer):g} %" if not buffer.startswith("n") else f"{buffer[1:]} / task"


def heatmap(summary: pl.DataFrame, column: str, *, title: str, stem: str) -> None:
    """Precision x buffer heatmap of one summary column (mean over seeds), in percent."""
    means = summary.group_by("precision", "buffer").agg(pl.col(column).mean()).to_pandas()
    table = means.pivot(index="precision", columns="buffer", values=column) * 100
    order = _buffer_order([str(b) for b in table.columns])
    table = table[order]
    table.columns = [_percent_label(b) for b in order]
    fig, ax = plt.subplots(figsize=(1.1 * len(order) + 2, 0.6 * len(table) + 1.5))
    sns.heatmap(table, annot=True, fmt=".1f", cmap="viridis", cbar_kws={"label": "accuracy (%)"}, ax=ax)
    ax.set_xlabel("replay buffer (share of each earlier task's training data)")
    ax.set_ylabel("precision of the frozen base")
    ax.set_title(title)
    _save(fig, stem)


def _fraction_rows(frame: pl.DataFrame, metric: str) -> pl.DataFrame:
    """The pooled (seed 'all') rows of one metric at fractional buffers, with the buffer in percent."""
    return (
        frame.filter(pl.col("seed") == "all", pl.col("metric") == metric, ~pl.col("buffer").str.starts_with("n"))
        .with_columns((pl.col("buffer").cast(pl.Float64) * 100).alias("buffer_percent"))
        .sort("buffer_percent")
    )


def _symlog_buffer_axis(ax, buffers_percent) -> None:
    """Linear below 0.1 %, logarithmic above: 0 and 0.1 % both stay visible; a tick at every buffer run."""
    ax.set_xscale("symlog", linthresh=0.1)
    ticks = sorted(set(buffers_percent))
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=8)
    ax.minorticks_off()
    ax.set_xlim(-0.02, max(ticks) * 1.3 if ticks else 1)
    ax.set_xlabel("replay buffer (% of each earlier task's training data; symlog axis)")


def _dodge(x: np.ndarray, i: int, n: int) -> np.ndarray:
    """Spread n series sharing the x values so their error bars do not overlap (multiplicatively on the log part,
    additively at 0)."""
    offset = i - (n - 1) / 2
    return np.where(x > 0, x * (1 + 0.07 * offset), 0.008 * offset)


def _difference_panel(ax, comparison: pl.DataFrame, metric: str, precisions: Sequence[str], palette) -> None:
    """Each precision minus the reference on one metric against buffer size, with paired intervals as error bars."""
    frame = _fraction_rows(comparison, metric)
    for i, (precision, color) in enumerate(zip(precisions, palette, strict=True)):
        rows = frame.filter(pl.col("precision") == precision)
        x = _dodge(rows["buffer_percent"].to_numpy(), i, len(precisions))
        low, high, mid = (100 * rows[c].to_numpy() for c in ("ci_low", "ci_high", "difference"))
        ax.errorbar(x, mid, yerr=[mid - low, high - mid], marker="o", capsize=3, color=color, label=precision)
    ax.axhline(0, color="grey", linewidth=0.8)
    _symlog_buffer_axis(ax, frame["buffer_percent"].to_list())
    ax.set_ylabel(f"minus {comparison['reference'][0]} (points)")


def retention_by_buffer(intervals: pl.DataFrame, comparison: pl.DataFrame, metric: str, *, title: str,
                        stem: str) -> None:  # fmt: skip
    """The study's question in one figure: retention against buffer size per precision, each point with its
    bootstrap interval (over examples, and seeds when there are several) as a band; below it, on the same x axis,
    each precision minus the reference with its paired interval (when `comparison` has rows)."""
    frame = _fraction_rows(intervals, metric)
    precisions = frame["precision"].unique(maintain_order=True).to_list()
    palette = dict(zip(precisions, sns.color_palette(n_colors=len(precisions)), strict=True))
    compared = comparison.height > 0
    fig, axes = plt.subplots(2 if compared else 1, 1, figsize=(6.5, 7 if compared else 4), sharex=True,
                             squeeze=False, gridspec_kw={"height_ratios": [3, 2] if compared else [1]})  # fmt: skip
    ax = axes[0][0]
    for precision in precisions:
        rows = frame.filter(pl.col("precision") == precision)
        x = rows["buffer_percent"].to_numpy()
        ax.fill_between(x, 100 * rows["ci_low"].to_numpy(), 100 * rows["ci_high"].to_numpy(),
                        color=palette[precision], alpha=0.2, linewidth=0)  # fmt: skip
        ax.plot(x, 100 * rows["estimate"].to_numpy(), marker="o", color=palette[precision], label=precision)
    _symlog_buffer_axis(ax, frame["buffer_percent"].to_list())
    confidence = f"{100 * frame['confidence'][0]:g} %"
    ax.set_ylabel(f"accuracy (%); band: {confidence} interval")
    ax.legend(title="precision")
    ax.set_title(title)
    if compared:
        ax.set_xlabel("")
        others = [p for p in precisions if p in set(comparison["precision"])]
        _difference_panel(axes[1][0], comparison, metric, others, [palette[p] for p in others])
        axes[1][0].set_title(f"paired difference from {comparison['reference'][0]} ({confidence} intervals)",
                             fontsize=10)  # fmt: skip
    _save(fig, stem)


def difference_by_buffer(comparison: pl.DataFrame, metric: str, label: str, *, stem: str) -> None:
    """Each precision minus the reference on one metric against buffer size, with paired intervals."""
    reference = comparison["reference"][0]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    precisions = comparison["precision"].unique(maintain_order=True).to_list()
    _difference_panel(ax, comparison, metric, precisions, sns.color_palette(n_colors=len(precisions)))
    ax.set_title(label)
    ax.legend(title="precision")
    confidence = f"{100 * comparison['confidence'][0]:g} %"
    fig.suptitle(f"Each precision against {reference}, paired by test example and seed ({confidence} intervals)")
    _save(fig, stem)


def r_matrix(metrics: dict, *, stem: str) -> None:
    """One cell's R: the score on every task (grouped by family) and each family's mean, after every stage."""
    stages = metrics["stages"]
    rows = ["base"] + [f"after {s}" for s in stages]
    families = metrics["families"]
    tasks = sorted(metrics["R_tasks"], key=lambda t: (stages.index(families[t]) if families[t] in stages
                                                      else len(stages), t))  # fmt: skip
    per_task = pl.DataFrame({f"{t}\n({families[t]})": [100 * v for v in metrics["R_tasks"][t]] for t in tasks})
    per_family = pl.DataFrame({f"{f}\nmean": [100 * row[j] for row in metrics["R"]] for j, f in enumerate(stages)})
    fig, axes = plt.subplots(1, 2, figsize=(0.75 * len(tasks) + 0.9 * len(stages) + 4, 0.55 * len(rows) + 2),
                             gridspec_kw={"width_ratios": [len(tasks), len(stages) + 1]})  # fmt: skip
    for ax, frame, title in ((axes[0], per_task, "every task"), (axes[1], per_family, "family means (R)")):
        table = frame.to_pandas()
        table.index = rows
        sns.heatmap(table, annot=True, fmt=".0f", vmin=0, vmax=100, cmap="viridis", ax=ax,
                    cbar=ax is axes[1], cbar_kws={"label": "score (%)"})  # fmt: skip
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=0, labelsize=8)
    axes[0].set_ylabel("checkpoint")
    axes[1].set_yticks([])
    cell = metrics["cell"]
    fig.suptitle(f"R matrix: {cell['model']}, {cell['precision']}, buffer {_percent_label(str(cell['buffer']))}, "
                 f"seed {cell['seed']}", y=1.03)  # fmt: skip
    _save(fig, stem)


def forward_by_stage(summary: pl.DataFrame, stages: Sequence[str], *, stem: str) -> None:
    """Forward accuracy of each stage per precision, without replay (buffer 0) and averaged over seeds."""
    no_replay = summary.filter(pl.col("buffer").cast(pl.String) == "0")
    long = no_replay.unpivot(index=["precision", "seed"], on=[f"forward_{s}" for s in stages], variable_name="stage",
                             value_name="accuracy").with_columns(pl.col("stage").str.replace("forward_", ""),
                                                                 pl.col("accuracy") * 100)  # fmt: skip
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.barplot(data=long.to_pandas(), x="stage", y="accuracy", hue="precision", order=list(stages), ax=ax)
    ax.set_ylabel("forward accuracy right after training (%)")
    ax.set_xlabel("stage (family trained)")
    ax.set_title("How well each precision learns each new family (no replay)")
    _save(fig, stem)


def training_loss(train_reports: Sequence[str], *, stem: str) -> None:
    """Loss curves of every first stage (one line per precision and seed): how each precision learns."""
    rows = []
    for path in train_reports:
        report = read_json(path)
        cell = report["cell"]
        rows += [{"precision": cell["precision"], "seed": cell["seed"], "step": s, "loss": loss}
                 for s, loss in report["loss_curve"]]  # fmt: skip
    frame = pl.DataFrame(rows).with_columns(
        pl.col("loss").rolling_mean(window_size=20, min_samples=1).over("precision", "seed").alias("loss (mean of 20)")
    )
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=frame.to_pandas(), x="step", y="loss (mean of 20)", hue="precision", ax=ax)
    ax.set_yscale("log")
    ax.set_ylabel("training loss on target tokens (log scale)")
    ax.set_xlabel("optimizer step of stage 1")
    ax.set_title("Stage-1 training loss by precision of the frozen base")
    _save(fig, stem)


def cost_by_precision(train_reports: Sequence[str], *, stem: str) -> None:
    """Median step time and the base's weight memory per precision, from every training report."""
    rows, machines = [], set()
    for path in train_reports:
        report = read_json(path)
        rows.append({"precision": f"{report['cell']['precision']}\n({report['compute_dtype']})",
                     "step time (ms)": report["median_step_ms"],
                     "base weights (MiB)": report["base_weight_bytes"] / 2**20})  # fmt: skip
        machines.add(f"{report['device']} {report.get('cpu_capability') or ''}".strip())
    frame = pl.DataFrame(rows).to_pandas()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    sns.barplot(data=frame, x="precision", y="step time (ms)", ax=axes[0], errorbar=("pi", 95))
    axes[0].set_title("Median LoRA step time (all stages)")
    axes[0].set_xlabel("precision (dtype its matmuls run in)")
    sns.barplot(data=frame, x="precision", y="base weights (MiB)", ax=axes[1], errorbar=None)
    axes[1].set_title("Memory of the frozen base's weights")
    axes[1].set_xlabel("precision (dtype its matmuls run in)")
    fig.suptitle(f"What each precision costs, on {', '.join(sorted(machines))}")
    _save(fig, stem)


def mechanism(table: pl.DataFrame, *, stem: str) -> None:
    """Each precision's and control arm's paired difference from the reference (no replay), per metric, with its
    interval: the arms beside the real int8 and nf4 they borrow their error from."""
    compared = table.filter(pl.col("minus_reference").is_not_null())
    metrics = list(dict.fromkeys(compared["metric"]))
    fig, axes = plt.subplots(
        1, max(1, len(metrics)), figsize=(5.5 * max(1, len(metrics)), 4.2), squeeze=False, layout="constrained"
    )
    for ax, metric in zip(axes[0], metrics, strict=False):
        part = compared.filter(pl.col("metric") == metric).filter(pl.col("model") == compared["model"][0])
        names = part["precision"].to_list()
        y = np.arange(len(names))
        values = 100 * part["minus_reference"].to_numpy()
        low = values - 100 * part["minus_reference_low"].to_numpy()
        high = 100 * part["minus_reference_high"].to_numpy() - values
        colors = ["tab:red" if n.endswith("int8") else "tab:blue" if n.endswith("nf4") else "gray" for n in names]
        for i, color in enumerate(colors):
            ax.errorbar(values[i], y[i], xerr=[[low[i]], [high[i]]], fmt="o", color=color, capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel("minus the reference (points, paired interval)")
        ax.set_title(metric.replace("_", " "))
    fig.suptitle(f"Control arms beside int8 and nf4: difference from the reference, buffer {table['buffer'][0]}")
    _save(fig, stem)


def protocol_ablation(table: pl.DataFrame, pairs_of: Mapping[tuple[str, str], tuple[Mapping[str, tuple], str]],
                      claims: Sequence[str], reference: str, *, first: Sequence[str], stem: str) -> None:  # fmt: skip
    """The protocol ablation (quantreplay.protocol): one panel per claim, for each variant every pair of the claim
    (`pairs_of[variant, claim]`: (label -> (estimate, ci_low, ci_high), the deciding pair's label); the deciding
    pair alone where it holds none) with its interval in points, one colour per pair, the deciding pair ringed in
    black; 0 and the `reference` variant's estimate of each pair marked; the variants in `first` in bold; a variant
    without an estimate shows its verdict instead."""
    names = list(dict.fromkeys(table["variant"]))
    fig, axes = plt.subplots(1, len(claims), figsize=(6.5 * len(claims), 0.55 * len(names) + 2.0), squeeze=False,
                             sharey=True, layout="constrained")  # fmt: skip
    colours = sns.color_palette("colorblind")
    for ax, claim in zip(axes[0], claims, strict=True):
        part = {r["variant"]: r for r in table.filter(pl.col("claim") == claim).iter_rows(named=True)}
        pairs = {}
        for name in names:
            row = part[name]
            found, deciding = pairs_of.get((name, claim), ({}, claim))
            found = dict(found)
            if row["estimate"] is not None and not found:
                found = {deciding: (row["estimate"], row["ci_low"], row["ci_high"])}
            pairs[name] = (found, deciding)
        labels = list(dict.fromkeys(label for found, _ in pairs.values() for label in found))
        step = 0.7 / max(len(labels), 1)
        for y, name in enumerate(names):
            found, deciding = pairs[name]
            if not found:
                ax.text(0, y, part[name]["verdict"], va="center", ha="center", fontsize=7, color="gray")
                continue
            for k, label in enumerate(labels):
                if label not in found:
                    continue
                value, low, high = (100 * v for v in found[label])
                at = y + (k - (len(labels) - 1) / 2) * step
                ax.errorbar(value, at, xerr=[[value - low], [high - value]], fmt="o", color=colours[k], capsize=2,
                            markeredgecolor="black" if label == deciding else colours[k],
                            label=label if y == 0 else None)  # fmt: skip
        ax.axvline(0, color="black", lw=0.8)
        for k, label in enumerate(labels):
            if reference in pairs and label in pairs[reference][0]:
                ax.axvline(100 * pairs[reference][0][label][0], color=colours[k], lw=0.8, ls="--")
        ax.set_yticks(range(len(names)), names)
        for tick in ax.get_yticklabels():
            tick.set_fontweight("bold" if tick.get_text() in first else "normal")
        ax.set_xlabel(f"difference in points [interval]; dashed: {reference}; ringed: the deciding pair")
        ax.set_title(claim, fontsize=10)
        if labels:
            ax.legend(fontsize=7, loc="best")
    # The panels share their y axis: inverted once, the first variant on top.
    axes[0][0].invert_yaxis()
    fig.suptitle("Protocol ablation: the authors' protocol, and each factor alone switched to the authors' value")
    _save(fig, stem)


def forgetting_in_stage(train_reports: Sequence[str], families: Mapping[str, str], *, stem: str) -> None:
    """The probe loss of each earlier family through every later stage (mean over its tasks and the seeds), one
    panel per stage and buffer (at most four buffers: none, the smallest, a middle and the largest)."""
    rows = []
    for path in train_reports:
        report = read_json(path)
        cell = report["cell"]
        rows += [{"precision": cell["precision"], "seed": cell["seed"], "buffer": str(cell.get("buffer")),
                  "stage": cell["stage"], "step": step, "family": families.get(task, task), "loss": loss}
                 for step, task, loss in report.get("probe_curve", [])]  # fmt: skip
    if not rows:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.text(0.5, 0.5, "no probe curves (training.probe_points: 0)", ha="center", va="center")
        ax.set_axis_off()
        _save(fig, stem)
        return
    frame = (
        pl.DataFrame(rows)
        .group_by("precision", "seed", "buffer", "stage", "step", "family")
        .agg(pl.col("loss").mean())
    )
    buffers = _buffer_order(frame["buffer"].unique().to_list())
    shown = list(dict.fromkeys([buffers[0], *buffers[1:2], buffers[len(buffers) // 2], buffers[-1]]))
    stages = list(dict.fromkeys(frame.sort("stage")["stage"].to_list()))
    stages = [s for s in dict.fromkeys(r["stage"] for r in rows) if s in stages]
    fig, axes = plt.subplots(len(shown), len(stages), figsize=(4.2 * len(stages) + 2, 2.8 * len(shown)),
                             squeeze=False, sharey=True, layout="constrained")  # fmt: skip
    # Each precision and family drawn alike in every panel, in the grid's order (group_by keeps none).
    precisions = list(dict.fromkeys(r["precision"] for r in rows))
    families = list(dict.fromkeys(r["family"] for r in rows))
    # One legend for the grid, outside the panels: the entries of the panel that probes the most families (the
    # last stage probes every earlier one).
    legend, most_families = None, 0
    for i, buffer in enumerate(shown):
        for j, stage in enumerate(stages):
            ax = axes[i][j]
            part = frame.filter(pl.col("buffer") == buffer, pl.col("stage") == stage)
            if part.height:
                sns.lineplot(data=part.to_pandas(), x="step", y="loss", hue="precision", style="family", ax=ax,
                             hue_order=precisions, style_order=families, errorbar=None)  # fmt: skip
                if part["family"].n_unique() > most_families:
                    legend, most_families = ax.get_legend_handles_labels(), part["family"].n_unique()
                ax.get_legend().remove()
            ax.set_title(f"during {stage}, buffer {_percent_label(buffer)}")
            ax.set_xlabel("optimizer steps of the stage" if i == len(shown) - 1 else "")
            ax.set_ylabel("probe loss of earlier tasks" if j == 0 else "")
    if legend is not None:
        fig.legend(*legend, loc="outside right upper", frameon=False)
    fig.suptitle("When forgetting happens: the loss of earlier tasks' probe sets during each later stage")
    _save(fig, stem)


def quant_error(errors: pl.DataFrame, *, stem: str) -> None:
    """Each precision's relative weight error per projection (mean over blocks and models), and int8's outlier
    columns per projection."""
    changed = errors.filter(pl.col("relative_error") > 0)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=[3, 2], layout="constrained")
    if changed.height:
        sns.barplot(data=changed.to_pandas(), x="module", y="relative_error", hue="precision", ax=axes[0],
                    errorbar=("pi", 100))  # fmt: skip
        axes[0].set_yscale("log")
        # Below the panels: inside, the legend hides bars.
        handles, labels = axes[0].get_legend_handles_labels()
        axes[0].get_legend().remove()
        fig.legend(handles, labels, loc="outside lower center", ncols=5, frameon=False)
    axes[0].set_ylabel("|W held - W| / |W| (log; bars: range over blocks)")
    axes[0].set_xlabel("projection")
    axes[0].set_title("How far each precision moves the frozen weights")
    outliers = errors.filter(pl.col("outlier_share").is_not_null())
    if outliers.height:
        sns.barplot(data=outliers.with_columns(pl.col("outlier_share") * 100).to_pandas(), x="module",
                    y="outlier_share", ax=axes[1], errorbar=("pi", 100), color="tab:gray")  # fmt: skip
    else:
        axes[1].text(0.5, 0.5, "no int8 in this grid", ha="center", va="center", transform=axes[1].transAxes)
    axes[1].set_ylabel("input columns on LLM.int8's outlier path (%)")
    axes[1].set_xlabel("projection")
    axes[1].set_title("int8: outlier columns on the probe text")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=45)
    _save(fig, stem)


def adapter_updates(telemetry: pl.DataFrame, *, stem: str) -> None:
    """The whole adapter's update through the stages per precision (buffer 0, mean over seeds), and how much of
    the previous stage's step the last stage keeps, by buffer."""
    total = telemetry.filter(pl.col("layer") == "total")
    precisions = list(dict.fromkeys(total["precision"]))
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4), layout="constrained")
    no_replay = total.filter(pl.col("buffer").cast(pl.String) == "0")
    sns.lineplot(data=(no_replay if no_replay.height else total).to_pandas(), x="after_stage", y="step_norm",
                 hue="precision", hue_order=precisions, marker="o", ax=axes[0], legend=False)  # fmt: skip
    axes[0].set_xticks(sorted(total["after_stage"].unique().to_list()))
    axes[0].set_xlabel("stage")
    axes[0].set_ylabel("|dW_k - dW_k-1| (Frobenius, whole adapter)")
    axes[0].set_title("How far each stage moves the adapter (buffer 0)")
    last = total.filter(pl.col("after_stage") == total["after_stage"].max())
    order = _buffer_order(last["buffer"].cast(pl.String).unique().to_list())
    sns.pointplot(data=last.with_columns(pl.col("buffer").cast(pl.String)).to_pandas(), x="buffer",
                  y="previous_step_kept", hue="precision", hue_order=precisions, order=order,
                  dodge=0.3 if last["precision"].n_unique() > 1 else False, ax=axes[1])  # fmt: skip
    axes[1].axhline(1.0, color="gray", lw=0.8, ls="--")
    axes[1].set_xlabel("replay buffer")
    axes[1].set_ylabel("share of the previous stage's step kept")
    axes[1].set_title("What the last stage leaves of the stage before")
    # The panels share one precision palette: one legend, beside them.
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    _save(fig, stem)


def cost_by_rule(cost: pl.DataFrame, *, stem: str) -> None:
    """CPU seconds of each rule's jobs, split by precision (Snakemake's benchmark files, via cost.csv)."""
    frame = (
        cost.with_columns(pl.col("precision").fill_null("(any)"))
        .group_by("rule", "precision")
        .agg(pl.col("cpu_seconds").sum() / 60, pl.col("jobs").sum())
    )
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.barplot(data=frame.to_pandas(), y="rule", x="cpu_seconds", hue="precision", ax=ax, errorbar=None)
    ax.set_xlabel("CPU minutes (all jobs of the rule)")
    ax.set_ylabel("")
    ax.set_title(
        f"Where the run's time went: {frame['cpu_seconds'].sum():.1f} CPU minutes in {frame['jobs'].sum()} jobs"
    )
    _save(fig, stem)


def make_plots(*, summary_csv: str, intervals_csv: str, comparison_csv: str, cost_csv: str, mechanism_csv: str,
               quant_error_csv: str,
               adapter_csv: str, train_reports: Sequence[str], first_stage_reports: Sequence[str],
               stages: Sequence[str], families: Mapping[str, str], stems: Mapping[str, str]) -> list[str]:  # fmt: skip
    """Draw the figures named in `stems` (figure name -> output stem; `quantreplay.grid.plot_names` says which
    figures a config has) from the aggregated and telemetry tables and the training reports (`families`: task ->
    family); returns the stems written."""
    strings = {"buffer": pl.String, "seed": pl.String, "precision": pl.String, "stage": pl.String}
    summary = read_csv(summary_csv, schema_overrides=strings)
    intervals = read_csv(intervals_csv, schema_overrides=strings)
    comparison = read_csv(comparison_csv, schema_overrides=strings)
    first, last = stages[0], stages[-1]
    retained = f"retention_{first}_after_{last}"
    figures = {
        "heatmap_retention": lambda stem: heatmap(summary, retained, stem=stem,
                                                  title=f"{first} accuracy after the last stage ({last})"),
        "retention_by_buffer": lambda stem: retention_by_buffer(
            intervals, comparison, retained, stem=stem, title=f"{first} accuracy after {last}, by replay buffer"),
        "heatmap_final_forward": lambda stem: heatmap(summary, f"forward_{last}", stem=stem,
                                                      title=f"Forward accuracy of the last stage ({last})"),
        "difference_by_buffer": lambda stem: difference_by_buffer(
            comparison, f"forward_{last}", f"forward accuracy of the last stage ({last})", stem=stem),
        "forward_by_stage": lambda stem: forward_by_stage(summary, stages, stem=stem),
        "training_loss": lambda stem: training_loss(first_stage_reports, stem=stem),
        "cost_by_precision": lambda stem: cost_by_precision(train_reports, stem=stem),
        "cost_by_rule": lambda stem: cost_by_rule(read_csv(cost_csv, schema_overrides=strings), stem=stem),
        "mechanism": lambda stem: mechanism(read_csv(mechanism_csv, schema_overrides=strings), stem=stem),
        "forgetting_in_stage": lambda stem: forgetting_in_stage(train_reports, families, stem=stem),
        "quant_error": lambda stem: quant_error(
            read_csv(quant_error_csv, schema_overrides={"outlier_share": pl.Float64}), stem=stem),
        "adapter_updates": lambda stem: adapter_updates(read_csv(adapter_csv, schema_overrides={
            **strings, "step_cosine": pl.Float64, "previous_step_kept": pl.Float64}), stem=stem),
    }  # fmt: skip
    for name, stem in stems.items():
        figures[name](stem)
    return list(stems.values())
