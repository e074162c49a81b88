# Stage 1 sees no replay, so its folder holds no buffer: one job per precision and seed serves every buffer.
rule train_first_stage:
    input:
        base=rules.build_base.output[0],
        data=get_stage_data,
    output:
        adapter=directory(grid.pattern("adapter", checkpoint="first")),
        report=grid.pattern("train_report", checkpoint="first"),
        manifest=grid.manifest(grid.pattern("adapter", checkpoint="first")),
    log:
        grid.rule_log("train_first_stage"),
    benchmark:
        grid.rule_benchmark("train_first_stage")
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
        setting_keys=get_setting_keys,
        code=library_code("train_stage"),
    script:
        "../scripts/train_stage.py"


# Every later stage continues the previous stage's adapter of the same cell on the replay mix.
rule train_stage:
    input:
        base=rules.build_base.output[0],
        data=[rules.replay_mix.output[0]],
        previous=get_previous_adapter,
        # The probe sets of forgetting inside the stage: every earlier task's test split.
        probe=get_earlier_test_data,
    output:
        adapter=directory(grid.pattern("adapter", checkpoint="later")),
        report=grid.pattern("train_report", checkpoint="later"),
        manifest=grid.manifest(grid.pattern("adapter", checkpoint="later")),
    log:
        grid.rule_log("train_stage"),
    benchmark:
        grid.rule_benchmark("train_stage")
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
        setting_keys=get_setting_keys,
        code=library_code("train_stage"),
    script:
        "../scripts/train_stage.py"
