"""A minimal progress report for long CLI commands: a bar on a terminal, plain lines when piped.

Interim helper (issue 20's `flask sqal export`); the shared terminal helper of issue 22 replaces it behind the same
three calls: `Progress(total, label)`, `advance(n)`, `finish()`. Output goes to stderr so stdout can carry data.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30
LINE_EVERY_SECONDS = 5.0  # when piped: one plain line at most this often
REDRAW_EVERY_SECONDS = 0.1


class Progress:
    """Count `total` units of `label`; redraws a bar on a TTY, else prints a line every LINE_EVERY_SECONDS."""

    def __init__(self, total: int | None, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = time.monotonic()
        self._last = 0.0
        self.tty = self.stream.isatty()

    def _rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-6)

    def _bar(self) -> str:
        if not self.total:
            return f"{self.done:,} {self.label}"
        share = min(self.done / self.total, 1.0)
        filled = int(share * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        return f"[{bar}] {share:6.1%} {self.done:,}/{self.total:,} {self.label}"

    def advance(self, count: int) -> None:
        """`count` more units done."""
        self.done += count
        now = time.monotonic()
        interval = REDRAW_EVERY_SECONDS if self.tty else LINE_EVERY_SECONDS
        if now - self._last >= interval:
            self._last = now
            self._show(final=False)

    def _show(self, final: bool) -> None:
        text = f"{self._bar()} ({self._rate():,.0f}/s)"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """Print the final state (always, once)."""
        self._show(final=True)
