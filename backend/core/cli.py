"""Helpers shared by every `flask …` command (and by scripts that do long work).

- `Progress(total, label)` with `advance(n)` / `finish()`, and `progress(items, label)` around an iterable: a bar
  redrawn in place on a terminal, a plain line every few seconds when piped or logged, always on stderr, so
  stdout stays the command's output (a key, a token, JSON, an export) for `$(…)` and pipes.
- `emit_json`: one JSON object on one line, for `--json`.
- `Seeders`: the app's sample-data seeders (`seeders` in backend.extensions), which init_db.py runs.
- `refuse_commands`: the CLI of an app built without a valid configuration still lists its commands and answers
  every `--help`; running a command prints the configuration error and exits 1.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

import click
from flask import Flask

from backend.base.extension import AppExtension

T = TypeVar("T")
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


def progress(items: Iterable[T], label: str, length: int | None = None, stream: TextIO | None = None) -> Iterator[T]:
    """Yield `items`, reporting each one done with `Progress` (the total is `length`, else `len(items)` if any)."""
    report = Progress(length if length is not None else _length(items), label, stream)
    for item in items:
        yield item
        report.advance(1)
    report.finish()


def _length(items: Iterable[Any]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


def emit_json(value: Any) -> None:
    """Print `value` as one JSON object on one line of stdout."""
    click.echo(json.dumps(value, default=_plain, separators=(",", ":")))


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def refuse_commands(app: Flask, message: str) -> None:
    """Make every command of `app.cli` exit 1 with `message` when it runs; parsing, listing and --help still work.

    The app's own command table gets copies: the module-level command objects other apps share stay untouched.
    """
    for name, command in list(app.cli.commands.items()):
        app.cli.commands[name] = _refusing(command, message)


def _refusing(command: click.Command, message: str) -> click.Command:
    clone = copy.copy(command)
    if isinstance(command, click.Group):
        # A group's own callback runs before its subcommand parses `--help`: only leaf commands refuse.
        assert isinstance(clone, click.Group)
        clone.commands = {name: _refusing(sub, message) for name, sub in command.commands.items()}
    else:
        clone.callback = _raiser(message)
    return clone


def _raiser(message: str) -> Callable[..., Any]:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise SystemExit(message)

    return refuse


class Seeders(AppExtension[list[Callable[[], None]]]):
    """The app's seeders: each domain appends its own from its `init_app` (`seeders.of(app).append(seed)`);
    init_db.py runs them in order inside an app context."""

    name = "seeders"

    def init_app(self, app: Flask) -> None:
        self.bind(app, [])
