"""The cleanup guardian: stops what a Lab started even when the test process is SIGKILLed.

A Lab starts this script as a child in its own session, keeps the write end of a pipe to it and
tells it, line by line, what to clean up:

    pid PID           a process to kill (SIGTERM, then SIGKILL)
    postfix DIR       a private Postfix instance: `postfix -c DIR stop`, then kill its master
    rmtree DIR        a directory to remove last
    done              the Lab cleaned up itself: exit without doing anything

When the pipe closes without `done` (the test died, however it died), the guardian does the
cleanup. ctest kills a timed-out test with SIGKILL, which no signal handler can catch; this can.
"""

import os
import shutil
import signal
import subprocess
import sys
import time


def stop_postfix(config_dir, timeout=10):
    """Stops a private instance: `postfix stop`, then SIGKILL its master if it lingers."""
    pid = _master_pid(config_dir)
    try:
        subprocess.run(["postfix", "-c", config_dir, "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        # A loaded machine (seen at load average 45: `postfix stop` still running after 10 s).
        # Cleaning up must not fail a test whose checks passed: the master is killed below.
        pass
    if pid:
        _wait_gone(pid, timeout)
        _kill_hard(pid)


def kill_process(pid, timeout=5):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    _wait_gone(pid, timeout)
    _kill_hard(pid)


def _master_pid(config_dir):
    queue = _queue_directory(config_dir)
    if not queue:
        return None
    try:
        with open(os.path.join(queue, "pid", "master.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _queue_directory(config_dir):
    try:
        with open(os.path.join(config_dir, "main.cf")) as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip() == "queue_directory":
                    return value.strip()
    except OSError:
        pass
    return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _kill_hard(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def cleanup(entries):
    """Runs the cleanup for `entries` (list of (kind, arg)): processes first, newest first,
    then Postfix instances, then directories."""
    for kind, arg in reversed(entries):
        try:
            if kind == "pid":
                kill_process(int(arg))
            elif kind == "postfix":
                stop_postfix(arg)
        except Exception as e:
            print(f"guardian: cleanup of {kind} {arg} failed: {e}", file=sys.stderr)
    for kind, arg in entries:
        if kind == "rmtree":
            shutil.rmtree(arg, ignore_errors=True)


def main():
    # The test's ctest/terminal signals are not ours: we leave only when the pipe closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    entries = []
    for line in sys.stdin:
        kind, _, arg = line.strip().partition(" ")
        if kind == "done":
            return 0
        if kind in ("pid", "postfix", "rmtree"):
            entries.append((kind, arg))
    cleanup(entries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
