"""A running coexist-policyd for black-box tests: its own config, map and sockets in a temporary
directory, log lines captured from --stderr, stopped (SIGTERM, then SIGKILL) on close.

Binaries come from the environment (set by tests/policyd.cmake):
    COEXIST_POLICYD   path of coexist-policyd
    COEXIST_MAP       path of coexist-map
The daemon is started as root and drops to `nobody` (config `user`), as in production; the map
directory is handed to nobody's group so the daemon can take its LMDB reader slot.
"""

import grp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

POLICYD = os.environ.get("COEXIST_POLICYD", "coexist-policyd")
COEXIST_MAP = os.environ.get("COEXIST_MAP", "coexist-map")
DAEMON_USER = "nobody"
DAEMON_GROUP = "nogroup"

# The map, its domains and what each recipient becomes: the scenario table all suites share.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "harness"))
from coexist_harness.scenarios import DOMAINS_INI, fill_map  # noqa: E402


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def netstring(payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return b"%d:%s," % (len(payload), payload)


def read_netstring(sock):
    """One netstring reply from `sock`, as str; raises EOFError if the server closed first."""
    length = b""
    while True:
        c = sock.recv(1)
        if not c:
            raise EOFError("connection closed")
        if c == b":":
            break
        length += c
        if len(length) > 6:
            raise ValueError(f"bad netstring length {length!r}")
    n = int(length)
    data = b""
    while len(data) < n + 1:
        chunk = sock.recv(n + 1 - len(data))
        if not chunk:
            raise EOFError("connection closed in a netstring")
        data += chunk
    if data[-1:] != b",":
        raise ValueError("netstring without its comma")
    return data[:-1].decode()


def policy_request(recipient, state="RCPT", queue_id="", **extra):
    attrs = {"request": "smtpd_access_policy", "protocol_state": state, "protocol_name": "ESMTP",
             "client_address": "127.0.0.1", "sender": "someone@example.org",
             "recipient": recipient, "queue_id": queue_id}
    attrs.update(extra)
    return "".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n"


def read_policy_reply(sock):
    """The action of one policy reply; raises EOFError if the server closed first."""
    data = b""
    while not data.endswith(b"\n\n"):
        c = sock.recv(1)  # byte by byte: never swallow the start of a pipelined next reply
        if not c:
            raise EOFError("connection closed")
        data += c
    lines = data.decode().split("\n")
    assert lines[0].startswith("action="), data
    return lines[0][len("action="):]


def closed_by_peer(sock, timeout):
    """True when the peer closes `sock` (EOF or reset) within `timeout` seconds; drains data."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def run_map(config, *args, check=True):
    return subprocess.run([COEXIST_MAP, "-c", config, *args], capture_output=True, text=True,
                          timeout=30, check=check)


class Policyd:
    """Config + map + daemon. Use as a context manager, or call start()/close().

    domains_ini: the [domain ...] sections (default: the scenario table's DOMAINS_INI; the
    transport-mode suite passes scenarios.transport_domains_ini(nexthop))."""

    def __init__(self, unknown_recipient="reject", idle_timeout=30, max_connections=1000,
                 max_request_bytes=4096, max_attributes=100, map_available=True,
                 socketmap_family="inet", extra_routing="", extra_policyd="", domains_ini=DOMAINS_INI):
        self.dir = tempfile.mkdtemp(prefix="coexist-policyd-")
        os.chmod(self.dir, 0o755)
        self.map_dir = os.path.join(self.dir, "map")
        self.policy_path = os.path.join(self.dir, "policy.sock")
        self.socketmap_host = "::1" if socketmap_family == "inet6" else "127.0.0.1"
        self.socketmap_port = free_port(self.socketmap_host)
        self.config = os.path.join(self.dir, "coexist.ini")
        self.log_path = os.path.join(self.dir, "policyd.log")
        self.process = None
        map_path = self.map_dir if map_available else os.path.join(self.dir, "no-such-map")
        with open(self.config, "w") as f:
            f.write(f"""[map]
path = {map_path}

[routing]
unknown_recipient = {unknown_recipient}
{extra_routing}
{domains_ini}
[policyd]
policy_socket = unix:{self.policy_path}
socketmap_socket = {socketmap_family}:{self.socketmap_port}@{self.socketmap_host}
user = {DAEMON_USER}
socket_group = postfix
socket_mode = 0660
max_connections = {max_connections}
max_request_bytes = {max_request_bytes}
max_attributes = {max_attributes}
idle_timeout = {idle_timeout}
{extra_policyd}
""")
        # The map is the scenario table, written by coexist-map as root; the daemon reads it as
        # nobody through the directory's group, which coexist-map keeps on later writes.
        if map_available:
            run_map(self.config, "init")
            fill_map(COEXIST_MAP, self.config)
            gid = grp.getgrnam(DAEMON_GROUP).gr_gid
            for root, dirs, files in os.walk(self.map_dir):
                for name in [root] + [os.path.join(root, f) for f in files]:
                    os.chown(name, -1, gid)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, timeout=10):
        self.log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen([POLICYD, "-c", self.config, "--stderr"],
                                        stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"coexist-policyd exited with {self.process.returncode}:\n{self.log()}")
            if "starting" in self.log() and self._connectable():
                return self
            time.sleep(0.05)
        raise TimeoutError(f"coexist-policyd did not start:\n{self.log()}")

    def _connectable(self):
        try:
            with self.policy_socket(timeout=1), self.socketmap_socket(timeout=1):
                return True
        except OSError:
            return False

    def stop(self, timeout=10):
        """SIGTERM; returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        return self.process.returncode

    def close(self):
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # -- clients -------------------------------------------------------------------------------

    def policy_socket(self, timeout=5):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.policy_path)
        return s

    def socketmap_socket(self, timeout=5):
        s = socket.create_connection((self.socketmap_host, self.socketmap_port), timeout=timeout)
        return s

    def ask_policy(self, recipient, **kw):
        with self.policy_socket() as s:
            s.sendall(policy_request(recipient, **kw))
            return read_policy_reply(s)

    def ask_socketmap(self, table, key):
        with self.socketmap_socket() as s:
            s.sendall(netstring(f"{table} {key}"))
            return read_netstring(s)

    def socketmap_spec(self):
        """The Postfix side of our socketmap listener, e.g. inet:127.0.0.1:PORT."""
        host = f"[{self.socketmap_host}]" if ":" in self.socketmap_host else self.socketmap_host
        return f"inet:{host}:{self.socketmap_port}"
