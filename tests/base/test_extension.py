"""AppExtension: each app keeps its own state under the extension's name; members read the current app's."""

from __future__ import annotations

import pytest
from flask import Flask

from backend.base.extension import AppExtension


class Counter(AppExtension[list[int]]):
    name = "test.counter"

    def init_app(self, app: Flask, start: int) -> None:
        self.bind(app, [start])


def test_each_app_keeps_its_own_state_and_members_read_the_current_one() -> None:
    counter = Counter()
    first, second = Flask("first"), Flask("second")
    counter.init_app(first, 1)
    counter.init_app(second, 2)
    assert first.extensions["test.counter"] is counter.of(first)
    assert (counter.of(first), Counter.of(second)) == ([1], [2])  # the class reads it too, with no instance
    with second.app_context():
        counter.current.append(3)
    assert counter.of(second) == [2, 3]
    assert counter.of(first) == [1]


def test_an_unbound_app_has_no_state() -> None:
    with pytest.raises(KeyError):
        Counter().of(Flask("unbound"))
    with pytest.raises(RuntimeError):  # outside an app context: no current app
        _ = Counter().current
