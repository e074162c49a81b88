# Stage 1 sees no replay, so its folder holds no buffer: one job per precision and seed serves every buffer.
rule train_first_stage:
    input:
        base="results/base/{model}",
        data=get_stage_data,
    output:
        adapter=directory(
            "results/train/{model}/{precision}/seed{seed}/{stage}/adapter"
        ),
        report="results/train/{model}/{precision}/seed{seed}/{stage}/train.json",
    log:
        "logs/train/{model}/{precision}/seed{seed}/{stage}.log",
    wildcard_constraints:
        stage=STAGES[0],
    conda:
        "../envs/quantreplay.yaml"
    threads: model_job("train", "threads")
    resources:
        mem_mb=model_job("train", "mem_mb"),
        runtime=model_job("train", "runtime"),
        gpu=model_job("train", "gpu"),
    params:
        settings=get_train_params,
    script:
        "../scripts/train_stage.py"


# Every later stage continues the previous stage's adapter of the same cell on the replay mix.
rule train_stage:
    input:
        base="results/base/{model}",
        data=get_replay_mix,
        previous=get_previous_adapter,
    output:
        adapter=directory(
            "results/train/{model}/{precision}/seed{seed}/buf{buffer}/{stage}/adapter"
        ),
        report="results/train/{model}/{precision}/seed{seed}/buf{buffer}/{stage}/train.json",
    log:
        "logs/train/{model}/{precision}/seed{seed}/buf{buffer}/{stage}.log",
    wildcard_constraints:
        stage="|".join(STAGES[1:]) or "(?!)",
    conda:
        "../envs/quantreplay.yaml"
    threads: model_job("train", "threads")
    resources:
        mem_mb=model_job("train", "mem_mb"),
        runtime=model_job("train", "runtime"),
        gpu=model_job("train", "gpu"),
    params:
        settings=get_train_params,
    script:
        "../scripts/train_stage.py"
