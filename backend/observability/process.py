"""Process metrics of the whole gunicorn process group (master + live workers), for multiprocess mode.

prometheus_client's ProcessCollector describes one process; behind gunicorn a scrape lands on any worker, so its
numbers would jump between workers. This collector sums memory, CPU and file descriptors over the master and its
children. CPU includes the master's `cutime`/`cstime` (CPU of workers already reaped), so
`process_cpu_seconds_total` only grows when a worker is replaced; `process_start_time_seconds` is the master's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

PROC = "/proc"
_SUMMED = ("process_virtual_memory_bytes", "process_resident_memory_bytes", "process_open_fds")


def _children(pid: int) -> list[int]:
    """Child pids of `pid` (the kernel's children list, else a scan of /proc)."""
    try:
        with open(f"{PROC}/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except OSError:
        pass
    children = []
    for entry in os.listdir(PROC):
        if not entry.isdigit():
            continue
        try:
            with open(f"{PROC}/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry))
    return children


def _reaped_children_cpu_seconds(pid: int) -> float:
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[-1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 0, cutime/cstime are fields 13/14 (stat(5) fields 16/17).
    return (float(fields[13]) + float(fields[14])) / os.sysconf("SC_CLK_TCK")


def _collect_one(pid: int) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in ProcessCollector(pid=lambda: pid, proc=PROC, registry=None).collect():
        for sample in family.samples:
            values[sample.name] = sample.value
    return values


class ProcessGroupCollector(Collector):
    """process_* metrics summed over a gunicorn master (`master_pid()`) and its workers."""

    def __init__(self, master_pid: Callable[[], int]) -> None:
        self._master_pid = master_pid

    def collect(self) -> Iterable[Metric]:
        """Read /proc for the master and every child; nothing when /proc is unavailable."""
        if not os.path.isdir(PROC):
            return []
        master = self._master_pid()
        master_values = _collect_one(master)
        if not master_values:
            return []
        totals = dict.fromkeys(_SUMMED, 0.0)
        cpu = master_values.get("process_cpu_seconds_total", 0.0) + _reaped_children_cpu_seconds(master)
        for pid in [master, *_children(master)]:
            values = master_values if pid == master else _collect_one(pid)
            for name in _SUMMED:
                totals[name] += values.get(name, 0.0)
            if pid != master:
                cpu += values.get("process_cpu_seconds_total", 0.0)
        families: list[Metric] = [
            GaugeMetricFamily(
                "process_virtual_memory_bytes", "Virtual memory of master + workers (bytes).", value=totals[_SUMMED[0]]
            ),
            GaugeMetricFamily(
                "process_resident_memory_bytes",
                "Resident memory of master + workers (bytes).",
                value=totals[_SUMMED[1]],
            ),
            GaugeMetricFamily(
                "process_open_fds", "Open file descriptors of master + workers.", value=totals[_SUMMED[2]]
            ),
            CounterMetricFamily(
                "process_cpu_seconds_total", "CPU seconds of master + workers, reaped workers included.", value=cpu
            ),
        ]
        for name, help_text in (
            ("process_start_time_seconds", "Start time of the gunicorn master since the epoch (seconds)."),
            ("process_max_fds", "Maximum open file descriptors per process."),
        ):
            if name in master_values:
                families.append(GaugeMetricFamily(name, help_text, value=master_values[name]))
        return families
