"""Lab: owns one temporary directory and everything started in it (sinks, Postfix instances,
daemons under test), and stops and removes all of it at the end, even on failure or SIGKILL."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

from . import guardian
from .ports import LOOPBACK4, free_port, wait_until
from .postfix import PostfixInstance
from .sink import SmtpSink

KEEP_ENV = "COEXIST_KEEP_LAB"  # set to 1 to keep the lab directory for a post-mortem


class Process:
    """A daemon under test: argv started with stdout+stderr going to <lab>/<name>.log."""

    def __init__(self, name, argv, log_path, env=None, cwd=None):
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.pid = self.popen.pid

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def alive(self):
        return self.popen.poll() is None

    def wait_log(self, pattern, timeout=20):
        """Waits until this process's output matches regex `pattern`; returns the match."""
        import re
        rx = re.compile(pattern, re.M)
        return wait_until(lambda: rx.search(self.log()), timeout,
                          f"{self.name} output to match {pattern!r}", on_timeout=self.log)

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout=10):
        """Waits for exit; returns the exit status (negative: killed by that signal)."""
        return self.popen.wait(timeout)

    def stop(self, timeout=10):
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        self._log.close()
        return self.popen.returncode


class Lab:
    """with Lab("milter") as lab: ... — see the package docstring for the whole API."""

    def __init__(self, name="lab", base_dir=None):
        self.name = name
        self.base_dir = base_dir
        self.directory = None
        self.sinks = {}
        self.postfixes = {}
        self.processes = {}
        self._guardian = None
        self._old_handlers = {}

    # ---- context ---------------------------------------------------------------------------

    def __enter__(self):
        self.directory = tempfile.mkdtemp(prefix=f"coexist-{self.name}-", dir=self.base_dir)
        os.chmod(self.directory, 0o755)  # Postfix's and smtp-sink's users must enter it
        self._guardian = subprocess.Popen(
            [sys.executable, guardian.__file__], stdin=subprocess.PIPE, text=True,
            start_new_session=True, stdout=subprocess.DEVNULL)
        if os.environ.get(KEEP_ENV) != "1":
            self._tell("rmtree", self.directory)
        self._trap_signals()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
                sys.stderr.write(self.diagnostics())
            self.close()
        finally:
            self._restore_signals()
        return False

    def close(self):
        """Stops everything (daemons, then Postfix, then sinks) and removes the directory."""
        for p in reversed(list(self.processes.values())):
            p.stop()
        for pf in reversed(list(self.postfixes.values())):
            pf.stop()
        for s in self.sinks.values():
            s.stop()
        if self.directory and os.environ.get(KEEP_ENV) != "1":
            shutil.rmtree(self.directory, ignore_errors=True)
        elif self.directory:
            sys.stderr.write(f"lab kept in {self.directory}\n")
        if self._guardian is not None:
            try:
                self._guardian.stdin.write("done\n")
                self._guardian.stdin.close()
            except OSError:
                pass
            self._guardian.wait(10)
            self._guardian = None

    def _tell(self, kind, arg):
        self._guardian.stdin.write(f"{kind} {arg}\n")
        self._guardian.stdin.flush()

    def _trap_signals(self):
        # SIGTERM/SIGINT unwind the with-block like an exception, so close() runs.
        if threading.current_thread() is not threading.main_thread():
            return

        def unwind(signum, _frame):
            raise KeyboardInterrupt(f"signal {signum}")

        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old_handlers[sig] = signal.signal(sig, unwind)

    def _restore_signals(self):
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers = {}

    # ---- building the lab ------------------------------------------------------------------

    def path(self, *parts):
        return os.path.join(self.directory, *parts)

    def free_port(self, host=LOOPBACK4):
        return free_port(host)

    def add_sink(self, name):
        """Starts an SmtpSink called `name` on a free loopback port."""
        sink = SmtpSink(name, self.path("sink-" + name), free_port())
        sink.start()
        self._tell("pid", sink.process.pid)
        self.sinks[name] = sink
        return sink

    def add_postfix(self, name="relay", routes=None, default_sink=None, main_cf=None,
                    master_cf_extra=(), ipv6_smtpd=False, start=True):
        """Creates (and by default starts) a private PostfixInstance called `name`.

        routes: {domain: SmtpSink or next-hop string}, also the relay_domains;
        default_sink: where everything else goes (None: refused with error:);
        main_cf: extra/overriding main.cf parameters; master_cf_extra: extra master.cf lines;
        ipv6_smtpd: also listen on [::1]:<free port> (instance.smtpd_port6).
        """
        pf = PostfixInstance(name, self.path("postfix-" + name), free_port(), routes,
                             default_sink, main_cf, master_cf_extra,
                             smtpd_port6=free_port("::1") if ipv6_smtpd else None)
        self.postfixes[name] = pf
        self._tell("postfix", pf.config_dir)
        if start:
            pf.start()
        return pf

    def spawn(self, name, argv, env=None, cwd=None):
        """Starts a daemon under test; its output goes to <lab>/<name>.log (Process.log())."""
        if name in self.processes and self.processes[name].alive():
            raise ValueError(f"process {name} is already running")
        p = Process(name, argv, self.path(name + ".log"), env, cwd)
        self._tell("pid", p.pid)
        self.processes[name] = p
        return p

    # ---- asking what happened --------------------------------------------------------------

    def where(self, message_id=None):
        """{sink name: sorted envelope recipients it received} (only sinks that got any)."""
        out = {}
        for name, sink in self.sinks.items():
            rcpts = sink.recipients(message_id)
            if rcpts:
                out[name] = rcpts
        return out

    def wait_all_queues_empty(self, timeout=30):
        for pf in self.postfixes.values():
            if pf.running:
                pf.wait_queue_empty(timeout)

    def diagnostics(self):
        """Maillog tails and daemon outputs, for a failed test's report."""
        parts = [f"==== lab {self.directory}"]
        for pf in self.postfixes.values():
            parts.append(f"---- maillog of postfix {pf.name}:\n{pf.log_tail(60)}")
        for p in self.processes.values():
            try:
                tail = "\n".join(p.log().splitlines()[-40:])
            except OSError:
                tail = "(no log)"
            parts.append(f"---- output of {p.name}:\n{tail}")
        return "\n".join(parts) + "\n"
