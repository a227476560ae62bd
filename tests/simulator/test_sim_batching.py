"""When a device's partial batch leaves: on its own linger clock, whatever held the previous batch up."""

from __future__ import annotations

import pytest

from simulator import link as link_module
from simulator.link import DeviceLink
from simulator.outbox import StoredSample
from simulator.wire import LinkOptions

LINGER = 1.0


def _link(first_tick: float) -> DeviceLink:
    device = DeviceLink("ESP32_T_01", "token", LinkOptions(url="ws://unused", batch=50, linger_s=LINGER), print, print)
    device._hold_until = first_tick  # as set by the first connection: this device's phase
    return device


def _sample(seq: int) -> StoredSample:
    return StoredSample("ESP32_T_01", seq, f"S-{seq}", "{}")


def _enqueue_at(device: DeviceLink, monkeypatch: pytest.MonkeyPatch, when: float, seq: int) -> None:
    monkeypatch.setattr(link_module.time, "monotonic", lambda: when)
    device.enqueue([_sample(seq)])


def test_a_partial_batch_leaves_at_the_next_tick_of_the_device_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    device = _link(first_tick=100.25)
    _enqueue_at(device, monkeypatch, 103.4, 1)
    assert device._next_wait(103.5) == pytest.approx(0.75)  # tick 104.25, not 1 s after the sample
    assert device._next_wait(104.25) is None


def test_a_late_batch_does_not_move_the_device_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tick-104.25 batch was held up (event loop, network) and left at 104.9: the next sample still waits for
    # tick 105.25. Counting a full linger from its arrival (105.9) would line this device up with every other one
    # the same stall held, and the line would then send in bursts.
    device = _link(first_tick=100.25)
    _enqueue_at(device, monkeypatch, 104.9, 1)
    assert device._next_wait(104.95) == pytest.approx(0.3)
