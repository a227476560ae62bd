"""The shape of the app's own extension objects: created unbound, bound to each app by `init_app`."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from flask import Flask, current_app

StateT = TypeVar("StateT")


class AppExtension(Generic[StateT]):
    """A Flask extension whose `init_app(app)` keeps the app's state in `app.extensions[name]`.

    Members other than `of` work on the current app (inside a request or app context). Code without one (gunicorn
    hooks, CLI setup, threads of their own) asks `of(app)`. `of` is a classmethod so the modules that define
    extension classes, which `backend.extensions` imports, can read one another's state without importing it back.
    """

    name: ClassVar[str]

    @classmethod
    def of(cls, app: Flask) -> StateT:
        """This extension's state for `app`."""
        state: StateT = app.extensions[cls.name]
        return state

    @property
    def current(self) -> StateT:
        """This extension's state for the current app."""
        return self.of(current_app)

    def bind(self, app: Flask, state: StateT) -> StateT:
        """Keep `state` as the app's (called by `init_app`)."""
        app.extensions[self.name] = state
        return state
