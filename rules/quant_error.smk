# What each precision does to the frozen weights (quantreplay.telemetry): one table per model and precision.
rule quant_error:
    input:
        base=rules.build_base.output[0],
        # The outlier share of int8 is measured on the first stage's training text.
        probe=get_first_stage_data,
    output:
        PATHS["quant_error"],
    log:
        grid.rule_log("quant_error"),
    benchmark:
        grid.rule_benchmark("quant_error")
    conda:
        "../envs/quantreplay.yaml"
    threads: model_job("evaluate", "threads")
    resources:
        mem_mb=model_job("evaluate", "mem_mb"),
        runtime=model_job("evaluate", "runtime"),
        gpu=model_job("evaluate", "gpu"),
    params:
        quantization=config["quantization"],
        max_seq_len=grid.stage_settings(config, STAGES[0])["max_seq_len"],
        seed=config["data"]["seed"],
        code=library_code("quant_error"),
    script:
        "../scripts/quant_error.py"
