# Every task's train and test split, in one row format, so training and evaluation never touch raw sources.
rule prepare_data:
    output:
        PATHS["data"],
        manifest=grid.manifest(PATHS["data"]),
    log:
        grid.rule_log("prepare_data"),
    benchmark:
        grid.rule_benchmark("prepare_data")
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        spec=get_split_params,
        code=library_code("prepare_data"),
    script:
        "../scripts/prepare_data.py"
