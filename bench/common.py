"""Shared helpers of the benchmark: output, percentiles, process tables and CPU accounting.

Starting and stopping processes is scripts.processes'.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

START = time.monotonic()


# Output -------------------------------------------------------------------------------------
def log(message: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {message}", flush=True)


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def mark(ok: bool | None) -> str:
    return "" if ok is None else ("✓" if ok else "✗")


# Processes ----------------------------------------------------------------------------------
def proc_table() -> dict[int, tuple[int, int, float]]:
    """pid -> (ppid, start time in ticks, CPU seconds) for every process."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        # fields[0] is field 3 (state): ppid is field 4, utime 14, stime 15, starttime 22.
        table[int(name)] = (
            int(fields[1]),
            int(fields[19]),
            (int(fields[11]) + int(fields[12])) / tick,
        )
    return table


def descendants(pid: int, table=None) -> list[int]:
    table = table or proc_table()
    children: dict[int, list[int]] = {}
    for child, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def status_kb(pid: int, key: str) -> int | None:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def cluster_workers(cluster_pid: int, workers: int) -> list[int]:
    """qcluster -> sentinel -> [workers..., monitor, pusher] (django-q2 spawns in that order);
    a worker spawned later (recycled or reincarnated) comes after the pusher."""
    table = proc_table()
    sentinels = [p for p, (ppid, _, _) in table.items() if ppid == cluster_pid]
    best: list[int] = []
    for sentinel in sentinels:
        kids = sorted(
            (p for p, (ppid, _, _) in table.items() if ppid == sentinel), key=lambda p: table[p][1]
        )
        if len(kids) > len(best):
            best = kids
    return best[:workers] + best[workers + 2 :]


def total_cpu_busy() -> tuple[float, float]:
    """(busy seconds, all seconds) summed over CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]
    return (sum(values) - idle) / tick, sum(values) / tick


class CpuMeter:
    """CPU used by the workers, PostgreSQL, the receiver and the machine over a span."""

    history: list[dict[str, float]] = []  # every span measured, for the noise note

    def __init__(self, groups: dict[str, callable]):
        self.groups = groups
        self.start = self._read()
        self.seen: dict[str, dict] = {name: dict(self.start[name]) for name in groups}

    def sample(self) -> None:
        """Note every process's CPU now: one that ends before stop() (a delivery loop closes
        its database session at the end of each slice) still counts up to its last sample."""
        now = self._read()
        for name in self.groups:
            self.seen[name].update(now[name])

    def _read(self) -> dict[str, Any]:
        table = proc_table()
        out: dict[str, Any] = {}
        for name, pids in self.groups.items():
            # Per process (pid, start time): a process that ends during the span must not take
            # its CPU from before the span off the group's total (PostgreSQL backends of an
            # earlier cluster did: their time showed up as "other").
            out[name] = {(p, table[p][1]): table[p][2] for p in pids() if p in table}
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        out["clients"] = usage.ru_utime + usage.ru_stime  # our children that ended (clients)
        out["busy"], out["all"] = total_cpu_busy()
        out["wall"] = time.monotonic()
        return out

    def stop(self) -> dict[str, float]:
        end = self._read()
        for name in self.groups:
            end[name] = self.seen[name] | end[name]  # ended processes at their last sample
        wall = end["wall"] - self.start["wall"]
        cores = {
            name: sum(cpu - self.start[name].get(key, 0.0) for key, cpu in end[name].items()) / wall
            for name in self.groups
        }
        cores["clients"] = max(0.0, end["clients"] - self.start["clients"]) / wall
        all_span = end["all"] - self.start["all"]
        cores["machine"] = (end["busy"] - self.start["busy"]) / all_span * (os.cpu_count() or 1)
        # Whatever else ran: other people's processes on a shared machine, the bench itself.
        cores["other"] = max(
            0.0, cores["machine"] - sum(v for k, v in cores.items() if k != "machine")
        )
        CpuMeter.history.append(cores)
        return cores


def cpu_text(cores: dict[str, float]) -> str:
    parts = [f"{name} {value:.2f}" for name, value in cores.items() if name != "machine"]
    return (
        f"CPU cores busy {cores.get('machine', 0):.2f}/{os.cpu_count()} (" + ", ".join(parts) + ")"
    )
