# Replay is precision-independent: one mix per seed, buffer and later stage serves every precision.
rule replay_mix:
    input:
        new=get_stage_data,
        earlier=get_earlier_data,
    output:
        PATHS["replay"],
    log:
        PATHS["replay_log"],
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        code=library_code("replay_mix"),
    script:
        "../scripts/replay_mix.py"
