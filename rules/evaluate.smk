# Every checkpoint, and the untrained base in each precision (after_stage 0), on every task's test split.
rule evaluate:
    input:
        base="results/base/{model}",
        adapter=get_checkpoint_adapter,
        tests=get_test_data,
    output:
        predictions="results/eval/{model}/{precision}/{checkpoint}/predictions.parquet",
        scores="results/eval/{model}/{precision}/{checkpoint}/scores.json",
    log:
        "logs/eval/{model}/{precision}/{checkpoint}.log",
    conda:
        "../envs/quantreplay.yaml"
    threads: model_job("evaluate", "threads")
    resources:
        mem_mb=model_job("evaluate", "mem_mb"),
        runtime=model_job("evaluate", "runtime"),
        gpu=model_job("evaluate", "gpu"),
    params:
        settings=get_eval_params,
    script:
        "../scripts/evaluate.py"


# One cell's R matrix and its forgetting metrics, from the base and every stage of that buffer.
rule cell_metrics:
    input:
        get_cell_scores,
    output:
        "results/metrics/{model}/{precision}/seed{seed}/buf{buffer}.json",
    log:
        "logs/metrics/{model}/{precision}/seed{seed}/buf{buffer}.log",
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        stages=STAGES,
    script:
        "../scripts/cell_metrics.py"
