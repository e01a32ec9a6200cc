"""How progress is shown: live bars on a terminal, whole lines every few seconds in a log file.

A bar redrawn with carriage returns is what a person at a terminal wants and what a log file
(SLURM's output, ``> run.log``) must not get: every redraw stays in the file (hundreds of KB per
training run). So where the bars' stream (stderr) is not a terminal, :func:`progress_bar` prints
one plain line per ``every_s`` seconds (a bar that finishes sooner prints nothing, a longer one
ends with its final line, ETA and rate included), and training prints one line per epoch
(:class:`EpochLines`) instead of Lightning's bar.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Iterable, TextIO

from tqdm.auto import tqdm

EVERY_S = 30.0  # seconds between two progress lines of one bar in a log file (`progress_every_s`)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the cursor moves tqdm uses for nested bars


def configure(every_s: float) -> None:
    """Set the seconds between two progress lines in a log file (the job's ``progress_every_s``)."""
    global EVERY_S
    if not float(every_s) > 0:
        raise ValueError(f"progress_every_s must be a positive number of seconds, got {every_s}")
    EVERY_S = float(every_s)


def interactive(stream: TextIO | None = None) -> bool:
    """Whether progress goes to a terminal (bars go to stderr, as tqdm's and Lightning's do)."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class LineStream:
    """A file for tqdm that turns every redraw into one line: no carriage returns, no cursor moves."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        for line in re.split(r"[\r\n]", _ANSI.sub("", text)):
            if line.strip():
                self.stream.write(line.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable | None = None, stream: TextIO | None = None, **options: Any) -> tqdm:
    """``tqdm(iterable, **options)`` on a terminal; elsewhere a bar that prints a line every ``EVERY_S``."""
    stream = sys.stderr if stream is None else stream
    if interactive(stream):
        return tqdm(iterable, file=stream, **options)
    # miniters=1: the clock alone decides (tqdm's adaptive skipping would stretch the gaps); leave: the last state stays
    quiet = dict(mininterval=EVERY_S, maxinterval=EVERY_S, delay=EVERY_S, miniters=1, leave=True, dynamic_ncols=False, ascii=True)
    return tqdm(iterable, file=LineStream(stream), **{**options, **quiet})
