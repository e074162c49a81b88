# The telemetry tables: every precision's weight error, and what the adapter does through the stages of every cell.
rule telemetry:
    input:
        quant_error=grid.quant_error_outputs(config),
        # Each cell's adapters in stage order, cell after cell as params.cells lists them.
        adapters=grid.grid_adapters(config),
    output:
        quant_error=report(
            grid.path("table", name="quant_error.csv"),
            caption="../report/quant_error_table.rst",
            category="Tables",
        ),
        adapters=report(
            grid.path("table", name="adapter_telemetry.csv"),
            caption="../report/adapter_telemetry.rst",
            category="Tables",
        ),
    log:
        grid.rule_log("telemetry"),
    benchmark:
        grid.rule_benchmark("telemetry")
    conda:
        "../envs/quantreplay.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        cells=grid.cells(config),
        stages=STAGES,
        code=library_code("telemetry"),
    script:
        "../scripts/telemetry.py"
