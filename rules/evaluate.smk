# Every checkpoint, and the untrained base in each precision (after_stage 0), on every task's test split.
rule evaluate:
    input:
        base=rules.build_base.output[0],
        adapter=get_checkpoint_adapter,
        tests=get_test_data,
    output:
        predictions=PATHS["predictions"],
        scores=PATHS["scores"],
    log:
        grid.rule_log("evaluate"),
    benchmark:
        grid.rule_benchmark("evaluate")
    conda:
        "../envs/quantreplay.yaml"
    threads: model_job("evaluate", "threads")
    resources:
        mem_mb=model_job("evaluate", "mem_mb"),
        runtime=model_job("evaluate", "runtime"),
        gpu=model_job("evaluate", "gpu"),
    params:
        settings=grid.eval_params(config),
        code=library_code("evaluate"),
    script:
        "../scripts/evaluate.py"


# One cell's R matrix and its forgetting metrics, from the base and every stage of that buffer.
rule cell_metrics:
    input:
        get_cell_scores,
    output:
        PATHS["metrics"],
    log:
        grid.rule_log("cell_metrics"),
    benchmark:
        grid.rule_benchmark("cell_metrics")
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        stages=STAGES,
        code=library_code("cell_metrics"),
    script:
        "../scripts/cell_metrics.py"
