"""Loopback ports: pick a free one at run time, wait until something listens on one.

Every port the harness uses is chosen here, so parallel ctest runs never collide on a fixed
number. There is a small window between choosing and binding; callers that bind later (Postfix,
smtp-sink, the daemons under test) fail loudly if they lose it, they never hang.
"""

import socket
import time

LOOPBACK4 = "127.0.0.1"
LOOPBACK6 = "::1"


def free_port(host=LOOPBACK4):
    """Returns a TCP port that nothing listens on at `host` right now (loopback only)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def is_listening(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            return True
        except OSError:
            return False


def is_listening_unix(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def wait_until(predicate, timeout, what, interval=0.05, on_timeout=None):
    """Polls `predicate` until it returns something truthy (returned) or `timeout` seconds pass
    (raises TimeoutError naming `what`; `on_timeout()` may add diagnostics to the message)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            extra = ""
            if on_timeout is not None:
                try:
                    extra = "\n" + on_timeout()
                except Exception as e:  # diagnostics must never hide the timeout itself
                    extra = f"\n(diagnostics failed: {e})"
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def wait_listening(host, port, timeout=10, what=None):
    wait_until(lambda: is_listening(host, port), timeout, what or f"{host}:{port} to listen")
