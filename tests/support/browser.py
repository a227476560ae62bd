"""Headless Chromium driven over the Chrome DevTools Protocol (its WebSocket, with the `websockets` client)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

from scripts.devservices import free_port

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def chromium_or_skip() -> str:
    """Path of the Chromium binary; skip without it, except in CI where a missing tool fails."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    message = "chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI must install it")
    pytest.skip(message)


class Browser:
    """One Chromium with a fresh profile under `work_dir`, driven through its first page target."""

    def __init__(self, binary: str, work_dir: Path) -> None:
        self.port = free_port()
        self.log_path = work_dir / "chromium.log"
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self._stack = ExitStack()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    *FLAGS,
                    f"--user-data-dir={work_dir / 'profile'}",
                    "--remote-debugging-address=127.0.0.1",
                    f"--remote-debugging-port={self.port}",
                    "about:blank",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        try:
            self.page: ClientConnection = self._stack.enter_context(
                connect(self._page_url(), max_size=None, open_timeout=10)
            )
            self.call("Runtime.enable")
            self.call("Log.enable")
        except BaseException:
            self.close()
            raise

    def _page_url(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                targets = requests.get(f"http://127.0.0.1:{self.port}/json/list", timeout=1).json()
                pages = [target for target in targets if target.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("chromium's DevTools endpoint did not come up")

    def call(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        """Send a CDP command and return its result; events read meanwhile are scanned for errors."""
        command_id = next(self._ids)
        self.page.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.page.recv(timeout=max(0.01, deadline - time.monotonic())))
            if message.get("id") == command_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._note_event(message)

    def _note_event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params.get("exceptionDetails", {}))[:500])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            self.errors.append(params["entry"].get("text", "")[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(json.dumps(params.get("args", []))[:500])

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        """Open `url` and wait for its document to be loaded."""
        self.call("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll `expression` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still falsy after {timeout}s: {expression}")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        self._stack.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """A headless Chromium for one test (skipped without it, except in CI)."""
    binary = chromium_or_skip()
    work_dir = tmp_path / "chromium"
    work_dir.mkdir()
    chromium = Browser(binary, work_dir)
    try:
        yield chromium
    finally:
        chromium.close()
