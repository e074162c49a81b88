# The frozen base that every precision quantizes: built once per model, shared by every cell.
rule build_base:
    input:
        tokenizer_data=get_tokenizer_data,
    output:
        directory(PATHS["base"]),
        manifest=grid.manifest(PATHS["base"]),
    log:
        grid.rule_log("build_base"),
    benchmark:
        grid.rule_benchmark("build_base")
    conda:
        "../envs/quantreplay.yaml"
    threads: model_job("build_base", "threads")
    resources:
        mem_mb=model_job("build_base", "mem_mb"),
        runtime=model_job("build_base", "runtime"),
        gpu=model_job("build_base", "gpu"),
    params:
        spec=get_model_params,
        code=library_code("build_base"),
    script:
        "../scripts/build_base.py"
