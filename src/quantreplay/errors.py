"""What a user can fix stops a step with one line and no traceback.

Every such error derives from OneLineError and knows its line: a bad config (`Config error: ...`, naming the key
and the value), a corrupt or unreadable input (`Corrupt input: ...`, naming the file and the command that rebuilds
it) and a machine where code cannot be scored safely (`Sandbox error: ...`, saying how to allow it). The Snakefile
and every script run inside `one_line_errors()`; a script's stderr is its job's log, which the profiles'
`show-failed-logs` prints when the job fails.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class OneLineError(Exception):
    """An error whose message is the whole story; `prefix` says what kind of problem it is."""

    prefix = "Error"

    def line(self) -> str:
        return f"{self.prefix}: {self}"


class ConfigError(OneLineError, ValueError):
    """A config value is wrong; the message is one line that names the key and the value. Here rather than in
    quantreplay.config so that a job can raise it without importing the config's checks (and every data source)."""

    prefix = "Config error"


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn a OneLineError raised inside into its line on stderr and exit status 1."""
    try:
        yield
    except OneLineError as error:
        sys.exit(error.line())
