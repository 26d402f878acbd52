"""Progress on long work: tqdm bars on a terminal, a one-line heartbeat when stderr goes to a file.

Every long phase (a grid's cells, training an original model or oracle, model banks, bi-level selection,
SFD's iterations, tuning trials, reproduction) reports through `progress_bar`, a drop-in for `tqdm(...)`. On a
terminal it is tqdm's bar. When stderr is a file or a pipe (a cluster job's log, `unlearn run 2> log`), a
redrawn bar would be one endless line of carriage returns, and a disabled one says nothing for the 40
minutes a DDPM cell takes. There the bar prints a plain timestamped line, at most every HEARTBEAT_S
seconds and at least that often while the phase runs: what it is doing (the bar's description) and how far
along it is (count, elapsed, rate, remaining). A phase shorter than HEARTBEAT_S prints nothing, so short
commands and their one-line errors stay as they are.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from typing import Any, TextIO

from tqdm.auto import tqdm
from tqdm.std import tqdm as plain_tqdm

HEARTBEAT_S = 30.0
"""Longest silence, in seconds, of a phase that reports to a log file."""


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default: stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


class _Lines(io.TextIOBase):
    """A file for tqdm that writes each redraw as one timestamped line (no carriage returns in a log)."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            part = part.strip()
            if part:
                self._stream.write(f"[{time.strftime('%H:%M:%S')}] {part}\n")
        self._stream.flush()
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


class _Heartbeat(plain_tqdm):
    """tqdm that prints a line every `HEARTBEAT_S` seconds while open, even between updates (a slow epoch)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._stopped = threading.Event()
        if not self.disable:
            threading.Thread(target=self._beat, name="unlearn-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT_S):
            try:
                self.refresh()
            except Exception:  # a heartbeat must never take the run down
                return

    def close(self) -> None:
        if hasattr(self, "_stopped"):
            self._stopped.set()
        super().close()


def progress_bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """`tqdm(iterable, **kwargs)` on a terminal; a timestamped heartbeat line every HEARTBEAT_S seconds otherwise."""
    if kwargs.get("disable") or on_terminal(kwargs.get("file")):
        return tqdm(iterable, **kwargs)
    kwargs.pop("position", None)
    kwargs.update(file=_Lines(kwargs.get("file") or sys.stderr), mininterval=HEARTBEAT_S, delay=HEARTBEAT_S,
                  ascii=True, ncols=100, dynamic_ncols=False, leave=True)
    return _Heartbeat(iterable, **kwargs)
