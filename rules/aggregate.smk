# The whole grid in one tidy table, one row of metrics per cell, bootstrap intervals on every metric, the
# paired precision comparisons, and the paper's table.
rule aggregate:
    input:
        scores=lambda wildcards: grid.eval_outputs(config),
        predictions=lambda wildcards: grid.prediction_outputs(config),
        metrics=lambda wildcards: grid.metrics_outputs(config),
    output:
        accuracy=report(
            "results/tables/accuracy.csv",
            caption="../report/accuracy.rst",
            category="Tables",
        ),
        summary=report(
            "results/tables/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
        intervals=report(
            "results/tables/intervals.csv",
            caption="../report/intervals.rst",
            category="Tables",
        ),
        comparison=report(
            "results/tables/comparison.csv",
            caption="../report/comparison.rst",
            category="Tables",
        ),
        table="results/tables/paper_table.md",
        table_html=report(
            "results/tables/paper_table.html",
            caption="../report/paper_table.rst",
            category="Tables",
        ),
    log:
        "logs/aggregate.log",
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        grid=grid.aggregate_inputs(config),
        stages=STAGES,
        analysis=grid.analysis_params(config),
    script:
        "../scripts/aggregate.py"


# The study at a glance: figures for the report, each with a caption that says how to read it.
rule plots:
    input:
        summary="results/tables/summary.csv",
        intervals="results/tables/intervals.csv",
        comparison="results/tables/comparison.csv",
        train=lambda wildcards: grid.train_outputs(config),
    output:
        # The report shows the PNGs; each has an SVG beside it for papers.
        [
            report(
                f"results/plots/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in PLOT_NAMES
        ],
        [f"results/plots/{name}.svg" for name in PLOT_NAMES],
    log:
        "logs/plots.log",
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        first_stage=lambda wildcards: grid.first_stage_reports(config),
        stages=STAGES,
    script:
        "../scripts/plots.py"


# One figure per cell: its R matrix, every task and family after every stage.
rule plot_r_matrix:
    input:
        "results/metrics/{model}/{precision}/seed{seed}/buf{buffer}.json",
    output:
        png=report(
            "results/plots/r_matrix/{model}/{precision}/seed{seed}/buf{buffer}.png",
            caption="../report/r_matrix.rst",
            category="R matrices",
            subcategory="{model}, {precision}",
            labels={"seed": "{seed}", "buffer": "{buffer}"},
        ),
        svg="results/plots/r_matrix/{model}/{precision}/seed{seed}/buf{buffer}.svg",
    log:
        "logs/plots/r_matrix/{model}/{precision}/seed{seed}/buf{buffer}.log",
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/plot_r_matrix.py"
