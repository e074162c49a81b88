# Held-out target loss (quantreplay.heldout), where config heldout_loss.examples > 0: every checkpoint, and the
# untrained base in each precision, on the same fixed test examples of every task.
rule heldout_loss:
    input:
        base=rules.build_base.output[0],
        adapter=get_checkpoint_adapter,
        tests=get_test_data,
    output:
        PATHS["heldout_loss"],
    log:
        grid.rule_log("heldout_loss"),
    benchmark:
        grid.rule_benchmark("heldout_loss")
    conda:
        "../envs/quantreplay.yaml"
    threads: model_job("evaluate", "threads")
    resources:
        mem_mb=model_job("evaluate", "mem_mb"),
        runtime=model_job("evaluate", "runtime"),
        gpu=model_job("evaluate", "gpu"),
    params:
        settings=grid.heldout_params(config),
        code=library_code("heldout_loss"),
    script:
        "../scripts/heldout_loss.py"


# The held-out loss matrix of every cell, its learning and forgetting metrics with bootstrap intervals, and each
# precision against the reference, as the aggregate rule does for accuracy.
rule heldout_tables:
    input:
        # Each cell's checkpoints in stage order, cell after cell as params.cells lists them.
        grid.grid_checkpoint_files(config, "heldout_loss"),
    output:
        losses=report(
            grid.path("table", name=grid.HELDOUT_TABLES["losses"]),
            caption="../report/heldout_loss.rst",
            category="Tables",
        ),
        intervals=grid.path("table", name=grid.HELDOUT_TABLES["intervals"]),
        comparison=grid.path("table", name=grid.HELDOUT_TABLES["comparison"]),
        markdown=grid.path("table", name=grid.HELDOUT_TABLES["markdown"]),
        html=report(
            grid.path("table", name=grid.HELDOUT_TABLES["html"]),
            caption="../report/heldout_loss.rst",
            category="Held-out loss",
        ),
    log:
        grid.rule_log("heldout_tables"),
    benchmark:
        grid.rule_benchmark("heldout_tables")
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        cells=grid.cells(config),
        stages=STAGES,
        reference=grid.comparison_reference(config),
        analysis=grid.analysis_params(config),
        code=library_code("heldout_tables"),
    script:
        "../scripts/heldout_tables.py"
