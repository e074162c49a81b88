"""Check a `snakemake` command's --configfile files before Snakemake's own CLI reads them.

Snakemake loads the files given with --configfile in its command-line code, before any workflow code runs: a
missing file ends in a Python traceback (snakemake/common/configfile.py opens it outside the `try` that would name
it), and an empty file or a list in "Config file must be given as JSON or YAML with keys at top level", which names
no file. The Snakefile's own strict check (rules/common.smk) comes too late for those. `make install` writes a
start-up hook into the virtual environment (`PTH_LINE`, in quantreplay-snakemake-guard.pth) that calls
`check_command_line` when an interpreter of that environment starts a snakemake command; it prints the same one
`Config error:` line as every other config problem and exits, and does nothing when the files are fit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

PTH_NAME = "quantreplay-snakemake-guard.pth"
# Python executes a .pth line that starts with `import` at every start-up: this one imports nothing more unless
# the command is snakemake (`snakemake ...` or `python -m snakemake ...`).
PTH_LINE = (
    "import sys; 'snakemake' in ' '.join(sys.orig_argv[1:3]) and "
    "__import__('quantreplay.snakemake_guard').snakemake_guard.check_command_line()\n"
)
CONFIGFILE_OPTIONS = ("--configfile", "--configfiles")


def snakemake_arguments(orig_argv: Sequence[str]) -> list[str] | None:
    """The arguments after the program when `orig_argv` (as in sys.orig_argv) runs Snakemake's CLI, else None."""
    if len(orig_argv) >= 2 and Path(orig_argv[1]).name == "snakemake":
        return list(orig_argv[2:])
    if len(orig_argv) >= 3 and orig_argv[1:3] == ["-m", "snakemake"]:
        return list(orig_argv[3:])
    return None


def config_file_arguments(arguments: Sequence[str]) -> list[str]:
    """The paths given to --configfile / --configfiles (each takes one or more values, as in Snakemake's parser)."""
    paths: list[str] = []
    taking = False
    for argument in arguments:
        if argument == "--":
            break
        option, equals, value = argument.partition("=")
        if option in CONFIGFILE_OPTIONS:
            taking = not equals
            if equals:
                paths.append(value)
        elif argument.startswith("-"):
            taking = False
        elif taking:
            paths.append(argument)
    return paths


def check_command_line(orig_argv: Sequence[str] | None = None) -> None:
    """Stop the process with one `Config error:` line if a --configfile of this snakemake command is unfit."""
    arguments = snakemake_arguments(sys.orig_argv if orig_argv is None else orig_argv)
    paths = config_file_arguments(arguments or [])
    if not paths:
        return
    from quantreplay.config import check_config_files
    from quantreplay.errors import ConfigError

    try:
        check_config_files(paths)
    except ConfigError as error:
        print(error.line(), file=sys.stderr, flush=True)
        # A start-up hook's SystemExit would be reported as an error in the .pth file; leave at once instead.
        os._exit(1)
    # The workflow imports the library of its own checkout (rules/common.smk puts it first on sys.path), which
    # need not be the one installed in this environment: forget the copy imported here.
    for name in [m for m in sys.modules if m == "quantreplay" or m.startswith("quantreplay.")]:
        del sys.modules[name]


def install(site_packages: str | Path) -> Path:
    """Write the start-up hook into `site_packages` (a virtual environment's purelib folder)."""
    path = Path(site_packages) / PTH_NAME
    path.write_text(PTH_LINE)
    return path


if __name__ == "__main__":
    import sysconfig

    print(install(sysconfig.get_paths()["purelib"]))
