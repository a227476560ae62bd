"""A TCP proxy on 127.0.0.1 that cuts client connections abruptly, for delivery-guarantee tests."""

from __future__ import annotations

import random
import socket
import struct
import threading
from contextlib import suppress

from scripts.devservices import free_port


def _pump(source: socket.socket, target: socket.socket) -> None:
    with suppress(OSError):
        while chunk := source.recv(65536):
            target.sendall(chunk)
    with suppress(OSError):
        target.shutdown(socket.SHUT_WR)


class ChaosProxy:
    """Forwards 127.0.0.1:`port` to `upstream_port`; `cut_random()` drops one live connection."""

    def __init__(self, upstream_port: int, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cuts = 0
        self._random = random.Random(seed)
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()

    def cut_random(self) -> bool:
        """Cut one live connection on both sides, losing whatever was in flight; False when none is open."""
        with self._lock:
            self._pairs = [pair for pair in self._pairs if pair[0].fileno() != -1]
            if not self._pairs:
                return False
            pair = self._pairs.pop(self._random.randrange(len(self._pairs)))
        for sock in pair:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump threads blocked in recv()
            sock.close()
        self.cuts += 1
        return True

    def close(self) -> None:
        """Stop accepting and cut every connection."""
        self._closed.set()
        self._listener.close()
        while self.cut_random():
            pass
