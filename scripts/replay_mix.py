"""Snakemake adapter: one later stage's training mix (rule replay_mix)."""

import sys

sys.stderr = open(snakemake.log[0], "w")
sys.path.insert(0, f"{snakemake.scriptdir}/../src")

from quantreplay.errors import one_line_errors
from quantreplay.replay import write_mix

with one_line_errors():
    write_mix(
        new=list(snakemake.input.new),
        earlier=list(snakemake.input.earlier),
        buffer=snakemake.wildcards.buffer,
        seed=int(snakemake.wildcards.seed),
        output=snakemake.output[0],
        settings=snakemake.params.settings,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
