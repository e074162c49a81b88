# Replay is precision-independent: one mix per seed, buffer and later stage serves every precision.
rule replay_mix:
    input:
        new=get_stage_data,
        earlier=get_earlier_data,
    output:
        PATHS["replay"],
        manifest=grid.manifest(PATHS["replay"]),
    log:
        grid.rule_log("replay_mix"),
    benchmark:
        grid.rule_benchmark("replay_mix")
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        settings=get_replay_params,
        code=library_code("replay_mix"),
    script:
        "../scripts/replay_mix.py"
