"""The machine as the benchmarks see it (bench/relay.py, lookups.py): its busy time, and a
settled start for each run."""

import os
import time

TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds():
    """CPU time spent by every core on anything but idle and I/O wait since boot (/proc/stat's
    first line, proc(5)), in seconds: the whole machine's work, Postfix's processes included."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / TICKS  # user..steal; guest is inside user


def settle(limit=10.0, quiet=0.1, window=0.25):
    """Before a run: sync(2) the last run's queue files and maillog, then wait (at most `limit`
    seconds) until every core is idle but for `quiet` of its time over `window` seconds. Without
    it, a run starts while the one before is still written out (the kernel's writeback comes
    every 5 s) and pays for it, or while the previous benchmark's load is still on the cores."""
    os.sync()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = machine_busy_seconds()
        time.sleep(window)
        if (machine_busy_seconds() - before) / window / os.cpu_count() <= quiet:
            return
