"""Helpers shared by every `flask …` command (and by scripts that do long work).

- `progress`: a progress bar on a terminal, plain lines when piped, always on stderr, so stdout stays the
  command's output (a key, a token, JSON) for `$(…)` and pipes.
- `emit_json`: one JSON object on one line, for `--json`.
- `refuse_commands`: the CLI of an app built without a valid configuration still lists its commands and answers
  every `--help`; running a command prints the configuration error and exits 1.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

import click
from flask import Flask

T = TypeVar("T")
PLAIN_STEPS = 10  # plain-line mode reports every tenth of the work (and the last item)


def progress(items: Iterable[T], label: str, length: int | None = None, stream: TextIO | None = None) -> Iterator[T]:
    """Yield `items`, reporting progress on `stream` (default stderr): click's bar on a terminal, else lines
    `label: done/total` every tenth of the work, so logs and CI output stay readable."""
    out = stream if stream is not None else sys.stderr
    total = length if length is not None else _length(items)
    if out.isatty():
        with click.progressbar(items, length=total, label=label, file=out, show_pos=True) as bar:
            yield from bar
        return
    step = max(1, (total or 0) // PLAIN_STEPS) if total else 100
    done = 0
    for item in items:
        yield item
        done += 1
        if done % step == 0 or done == total:
            print(f"{label}: {done}/{total}" if total else f"{label}: {done}", file=out, flush=True)
    if total is None or done != total:
        print(f"{label}: {done} done", file=out, flush=True)


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
