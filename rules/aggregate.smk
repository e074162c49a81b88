# The whole grid in one tidy table, one row of metrics per cell, bootstrap intervals on every metric, the
# paired precision comparisons and their power, a verdict on each of the paper's claims, and the paper's table.
rule aggregate:
    input:
        # Each cell's checkpoints in stage order, cell after cell as params.cells lists them.
        scores=grid.grid_checkpoint_files(config, "scores"),
        predictions=grid.grid_checkpoint_files(config, "predictions"),
        metrics=grid.metrics_outputs(config),
        # The findings name the model each base is, and its size.
        bases=[grid.path("base", model=model) for model in config["models"]],
        # Snakemake's record of every job before this one: cost.csv and jobs.csv.
        benchmarks=[grid.job_benchmark(job) for job in JOBS],
    output:
        accuracy=report(
            grid.path("table", name="accuracy.csv"),
            caption="../report/accuracy.rst",
            category="Tables",
        ),
        summary=report(
            grid.path("table", name="summary.csv"),
            caption="../report/summary.rst",
            category="Tables",
        ),
        intervals=report(
            grid.path("table", name="intervals.csv"),
            caption="../report/intervals.rst",
            category="Tables",
        ),
        comparison=report(
            grid.path("table", name="comparison.csv"),
            caption="../report/comparison.rst",
            category="Tables",
        ),
        findings=report(
            grid.path("table", name="findings.csv"),
            caption="../report/findings.rst",
            category="Tables",
        ),
        findings_md=grid.path("table", name="findings.md"),
        # "Claims" sorts first among the report's categories: the verdicts open the results.
        findings_html=report(
            grid.path("table", name="findings.html"),
            caption="../report/findings.rst",
            category="Claims",
        ),
        mechanism=report(
            grid.path("table", name="mechanism.csv"),
            caption="../report/mechanism.rst",
            category="Tables",
        ),
        mechanism_md=grid.path("table", name="mechanism.md"),
        mechanism_html=report(
            grid.path("table", name="mechanism.html"),
            caption="../report/mechanism.rst",
            category="Mechanism",
        ),
        cost=report(
            grid.path("table", name="cost.csv"),
            caption="../report/cost.rst",
            category="Tables",
        ),
        jobs=grid.path("table", name="jobs.csv"),
        table=grid.path("table", name="paper_table.md"),
        table_html=report(
            grid.path("table", name="paper_table.html"),
            caption="../report/paper_table.rst",
            category="Tables",
        ),
    log:
        grid.rule_log("aggregate"),
    benchmark:
        grid.rule_benchmark("aggregate")
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        cells=grid.cells(config),
        jobs=JOBS,
        stages=STAGES,
        analysis=grid.analysis_params(config),
        code=library_code("aggregate"),
    script:
        "../scripts/aggregate.py"


# The study at a glance: figures for the report, each with a caption that says how to read it.
rule plots:
    input:
        summary=rules.aggregate.output.summary,
        intervals=rules.aggregate.output.intervals,
        comparison=rules.aggregate.output.comparison,
        cost=rules.aggregate.output.cost,
        mechanism=rules.aggregate.output.mechanism,
        quant_error=rules.telemetry.output.quant_error,
        adapters=rules.telemetry.output.adapters,
        train=grid.train_outputs(config),
        first_stage=grid.first_stage_reports(config),
    output:
        # The report shows the PNGs; each has an SVG beside it for papers.
        # The report lists a category's files by their labels: the number keeps plot_names' order.
        png=[
            report(
                path,
                caption=f"../report/{name}.rst",
                category="Figures",
                labels={"figure": f"{i:02d}", "file": f"{name}.png"},
            )
            for i, (name, path) in enumerate(
                zip(grid.plot_names(config), grid.figure_outputs(config)), start=1
            )
        ],
        svg=grid.figure_outputs(config, "svg"),
    log:
        grid.rule_log("plots"),
    benchmark:
        grid.rule_benchmark("plots")
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        names=grid.plot_names(config),
        stages=STAGES,
        families={task: spec["family"] for task, spec in TASKS.items()},
        code=library_code("plots"),
    script:
        "../scripts/plots.py"


# One figure per cell: its R matrix, every task and family after every stage.
rule plot_r_matrix:
    input:
        rules.cell_metrics.output[0],
    output:
        png=report(
            grid.pattern("r_matrix", ext="png"),
            caption="../report/r_matrix.rst",
            category="R matrices",
            subcategory="{model}, {precision}",
            labels={"seed": "{seed}", "buffer": "{buffer}"},
        ),
        svg=grid.pattern("r_matrix", ext="svg"),
    log:
        grid.rule_log("plot_r_matrix"),
    benchmark:
        grid.rule_benchmark("plot_r_matrix")
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        code=library_code("plot_r_matrix"),
    script:
        "../scripts/plot_r_matrix.py"
