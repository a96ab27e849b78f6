"""CPU time spent by each part of a benchmark's machine during a measured stretch (Linux).

The benchmarks run everything on one machine: Latchkey's processes, and also the Slack
stand-in and moto (threads of the benchmark's own process), Redis and PostgreSQL. Where a
burst's CPU went tells whether a figure is bound by Latchkey's work or by the rig: in
production Slack and AWS are someone else's CPUs.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _part(cmdline: str, own: bool, name: str = "") -> str | None:
    if own:
        return "bench + stand-ins (Slack, moto)"
    if "gunicorn" in cmdline:
        return "web"
    # The pools `latchkey worker` forks are named (app.worker.pools.process_name); one run
    # with --queues has its own command line.
    if name.startswith("lk-pool-access") or "--queues access" in cmdline:
        return "worker: access pool"
    if name.startswith("lk-pool-messag") or "--queues messages" in cmdline:
        return "worker: messages pool"
    if "app.cli worker" in cmdline:
        return "worker: supervisor"
    if "app.cli beat" in cmdline:
        return "beat"
    if "redis-server" in cmdline:
        return "redis"
    if "postgres" in cmdline:
        return "postgresql"
    return None


def snapshot() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of every process of a known part, by pid."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue  # it exited meanwhile
        part = _part(cmdline, int(entry.name) == os.getpid(), name)
        if part is not None:
            # utime and stime: fields 14 and 15 of stat, 12 and 13 after the command name.
            found[int(entry.name)] = (part, (int(fields[11]) + int(fields[12])) / TICKS)
    return found


def spent(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> Counter[str]:
    """CPU seconds per part between two snapshots (a process started meanwhile counts whole)."""
    parts: Counter[str] = Counter()
    for pid, (part, seconds) in after.items():
        parts[part] += seconds - before.get(pid, (part, 0.0))[1]
    return parts


def describe(parts: Counter[str], wall: float) -> str:
    """One line: each part's CPU seconds, and the total against what the cores could give."""
    cores = os.cpu_count() or 1
    total = sum(parts.values())
    each = ", ".join(f"{part} {seconds:.2f}" for part, seconds in parts.most_common())
    return (
        f"CPU s: {each}; total {total:.2f} of {wall * cores:.2f} "
        f"({wall:.2f} s x {cores} cores, {100 * total / (wall * cores):.0f} %)"
    )
