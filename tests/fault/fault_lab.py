"""The fault lab: a real Postfix relaying a load of messages through coexist while a fault
happens, and the tally that proves nothing was lost, misrouted or duplicated.

One FaultLab holds, in one harness Lab (tests/harness):
  - a map of a few thousand generated users (contoso.com relays unknown users, northwind.com
    rejects them), written by root with the real coexist-map, read by the daemons as `nobody`
    through the map directory's group (nogroup), as deployed;
  - coexist-milter and coexist-policyd, as `nobody`, on loopback inet sockets;
  - two private Postfix relays with the deploy kit's settings (contrib/postfix/):
      "milter": smtpd_milters, milter_default_action = tempfail (way 1);
      "policy": check_policy_service with smtpd_policy_service_default_action = 451 4.3.5, and
                virtual_alias_maps + relay_recipient_maps on the socketmap (ways 2 and 3);
  - three sinks: google (old system), newsys (new system), internet (anything else: must stay
    empty).

Load (below) sends messages from a few parallel SMTP sessions and keeps, per Message-ID, the
recipients the relay accepted. A recipient refused with 4xx stays with the sender, as with a real
MTA, and is sent again once the fault is over (same Message-ID). A 5xx for a known user is a
failure: mail refused for good.

Tally: once the queues are empty, every message's deliveries in the sinks (by Message-ID and
envelope recipient) are compared with what its recipients' states say they must be: lost
(expected, not delivered), misrouted (delivered where it must not go), duplicated (one envelope
recipient delivered twice). All three must be 0.

Binaries come from the environment (tests/fault.cmake): COEXIST_MILTER, COEXIST_POLICYD,
COEXIST_MAP.
"""

import grp
import os
import re
import shutil
import smtplib
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "harness"))

import coexist_harness as h  # noqa: E402
from coexist_harness.smtp_client import make_message  # noqa: E402

MILTER = os.environ.get("COEXIST_MILTER", "")
POLICYD = os.environ.get("COEXIST_POLICYD", "")
MAP_TOOL = os.environ.get("COEXIST_MAP", "")
DAEMON_USER = "nobody"
DAEMON_GROUP = "nogroup"
SENDER = "load@fabrikam.example"
CLIENTS_PER_RELAY = 2   # parallel SMTP sessions per relay

CONTOSO_USERS = 3000
NORTHWIND_USERS = 200

INI = """\
[map]
path = {map}
{map_size}
[routing]
recipient_delimiter = +
keep_extension = yes
unknown_recipient = relay
loop_limit = 3

[domain contoso.com]
routing_domain = o365.contoso.com

[domain northwind.com]
routing_domain = o365.northwind.com
unknown_recipient = reject

[milter]
socket = inet:{milter_port}@127.0.0.1
user = {user}

[policyd]
policy_socket = inet:{policy_port}@127.0.0.1
socketmap_socket = inet:{socketmap_port}@127.0.0.1
user = {user}
"""


def require_binaries():
    for name, path in (("COEXIST_MILTER", MILTER), ("COEXIST_POLICYD", POLICYD),
                       ("COEXIST_MAP", MAP_TOOL)):
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"binary not found: {name}={path!r}")


# ---- the users: who is where --------------------------------------------------------------

class User:
    """One generated user: address, state, explicit target (or None)."""

    def __init__(self, address, state, target=None):
        self.address = address
        self.state = state
        self.target = target

    @property
    def local(self):
        return self.address.split("@")[0]

    @property
    def domain(self):
        return self.address.split("@")[1]

    def expected(self, recipient):
        """{(sink, envelope recipient)} that `recipient` (this user, maybe with +extension)
        must reach, each exactly once."""
        local, _, domain = recipient.partition("@")
        ext = local[len(self.local):]  # '' or '+tag'
        if self.target:
            t_local, _, t_domain = self.target.partition("@")
            routing = f"{t_local}{ext}@{t_domain}"
        else:
            routing = f"{self.local}{ext}@o365.{domain}"
        if self.state == "migrated":
            return {("newsys", routing)}
        if self.state == "dual":
            return {("google", recipient), ("newsys", routing)}
        return {("google", recipient)}


def generate_users():
    """contoso.com: 30% migrated (some with an explicit target), 5% dual, the rest on the source;
    northwind.com (a `reject` domain): half migrated."""
    users = []
    for i in range(CONTOSO_USERS):
        address = f"user{i}@contoso.com"
        if i % 10 < 3:
            target = f"u{i}.moved@contoso.onmicrosoft.com" if i % 50 == 0 else None
            users.append(User(address, "migrated", target))
        elif i % 20 == 3:
            users.append(User(address, "dual"))
        else:
            users.append(User(address, "source"))
    for i in range(NORTHWIND_USERS):
        users.append(User(f"staff{i}@northwind.com", "migrated" if i % 2 == 0 else "source"))
    return users


def write_csv(path, users):
    with open(path, "w") as f:
        f.write("address,state,target\n")
        for u in users:
            f.write(f"{u.address},{u.state},{u.target or ''}\n")
    os.chmod(path, 0o644)


# ---- the map tool ---------------------------------------------------------------------------

def run_map(ini, *args, timeout=120, check=True):
    r = subprocess.run([MAP_TOOL, "-c", ini, *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"coexist-map {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r


def map_size_key():
    """The [map] key that sets the writers' LMDB map size in this build ('max_size' since
    issue 10; 0.1.0 called it 'map_size'), found by asking the config parser."""
    probe_dir = os.environ.get("TMPDIR", "/tmp")
    for key in ("max_size", "map_size"):
        ini = os.path.join(probe_dir, f"coexist-fault-probe-{os.getpid()}.ini")
        with open(ini, "w") as f:
            f.write(f"[map]\npath = /nonexistent-coexist-probe\n{key} = 1M\n")
        try:
            r = subprocess.run([MAP_TOOL, "-c", ini, "stats"], capture_output=True, text=True,
                               timeout=30)
        finally:
            os.unlink(ini)
        if key not in r.stdout + r.stderr:
            return key
    return None


# ---- the lab --------------------------------------------------------------------------------

class FaultLab:
    """Map, daemons, sinks and both relays, started. Use as a context manager."""

    def __init__(self, name, small_map=False):
        self.name = name
        self.small_map = small_map
        self.users = generate_users()
        self.by_address = {u.address: u for u in self.users}
        self.failures = []          # what went wrong besides the tally (str)

    def __enter__(self):
        self.lab = h.Lab("fault-" + self.name).__enter__()
        try:
            self._build()
        except BaseException:
            self.lab.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        return self.lab.__exit__(exc_type, exc, tb)

    def _build(self):
        lab = self.lab
        self.ports = {k: lab.free_port() for k in ("milter", "policy", "socketmap")}
        self.map_dir = lab.path("map")
        self.map_size_line = ""
        if self.small_map:
            # A 1 MiB map: the writers outgrow it (MDB_MAP_FULL), double it, and the readers
            # meet MDB_MAP_RESIZED, the path a deployment with the 16 GiB default never takes
            # until it does.
            key = map_size_key()
            if key:
                self.map_size_line = f"{key} = 1M\n"
        self.ini = lab.path("coexist.ini")
        with open(self.ini, "w") as f:
            f.write(INI.format(map=self.map_dir, map_size=self.map_size_line,
                               milter_port=self.ports["milter"], policy_port=self.ports["policy"],
                               socketmap_port=self.ports["socketmap"], user=DAEMON_USER))
        os.chmod(self.ini, 0o644)
        # The map directory as a deployment has it: root:<daemons' group> 0750.
        os.makedirs(self.map_dir)
        os.chown(self.map_dir, 0, grp.getgrnam(DAEMON_GROUP).gr_gid)
        os.chmod(self.map_dir, 0o750)
        run_map(self.ini, "init")
        csv = lab.path("users.csv")
        write_csv(csv, self.users)
        run_map(self.ini, "import", csv, "--batch", "initial")

        self.sinks = {n: lab.add_sink(n) for n in ("google", "newsys", "internet")}
        self.start_milter()
        self.start_policyd()
        routes = {"contoso.com": self.sinks["google"], "northwind.com": self.sinks["google"],
                  "o365.contoso.com": self.sinks["newsys"],
                  "o365.northwind.com": self.sinks["newsys"],
                  "contoso.onmicrosoft.com": self.sinks["newsys"]}
        common = {"recipient_delimiter": "+", "default_process_limit": "50"}
        # Way 1 (contrib/postfix/main.cf.milter).
        self.milter_relay = lab.add_postfix("milter", routes=routes,
                                            default_sink=self.sinks["internet"],
                                            main_cf=dict(common, **{
                                                "smtpd_milters": f"inet:127.0.0.1:{self.ports['milter']}",
                                                "milter_default_action": "tempfail",
                                                "milter_protocol": "6"}))
        # Ways 2 and 3 (main.cf.policy, main.cf.socketmap). Loopback is in mynetworks, so the
        # policy check is not behind permit_mynetworks here, or it would never be asked.
        sm = f"socketmap:inet:127.0.0.1:{self.ports['socketmap']}"
        self.policy_relay = lab.add_postfix("policy", routes=routes,
                                            default_sink=self.sinks["internet"],
                                            main_cf=dict(common, **{
                                                "smtpd_recipient_restrictions":
                                                    "reject_unauth_destination, check_policy_service "
                                                    f"inet:127.0.0.1:{self.ports['policy']}",
                                                "smtpd_policy_service_default_action":
                                                    "451 4.3.5 Server configuration problem",
                                                "virtual_alias_maps": f"{sm}:virtual",
                                                "relay_recipient_maps": f"{sm}:recipients",
                                                "virtual_alias_domains": ""}))
        self.relays = [self.milter_relay, self.policy_relay]

    # ---- daemons --------------------------------------------------------------------------

    def start_milter(self):
        self.milter = self.lab.spawn("milter", [MILTER, "-c", self.ini, "--stderr"])
        h.wait_listening("127.0.0.1", self.ports["milter"], 20, "coexist-milter")
        return self.milter

    def start_policyd(self):
        self.policyd = self.lab.spawn("policyd", [POLICYD, "-c", self.ini, "--stderr"])
        h.wait_listening("127.0.0.1", self.ports["policy"], 20, "coexist-policyd policy")
        h.wait_listening("127.0.0.1", self.ports["socketmap"], 20, "coexist-policyd socketmap")
        return self.policyd

    def kill(self, process):
        """SIGKILL, as the OOM killer or a crash would; waits for the exit."""
        process.signal(9)
        status = process.wait(10)
        if status != -9:
            self.failures.append(f"{process.name} exited {status} before the SIGKILL")

    def check_alive(self, process, pid):
        """Records a failure unless `process` is still the one started with `pid`; restarts
        a dead daemon so the rest of the run can still drain and be counted."""
        if process.pid == pid and process.alive():
            return True
        status = process.popen.poll()
        self.failures.append(f"{process.name} (pid {pid}) died during the fault: exit status "
                             f"{status} (negative: signal)")
        if process.name == "milter":
            self.start_milter()
        else:
            self.start_policyd()
        return False

    # ---- the map's files ------------------------------------------------------------------

    def map_file(self, name="data.mdb"):
        return os.path.join(self.map_dir, name)

    def replace_file(self, path, content_from, length=None):
        """Replaces `path` atomically (temp file in the same directory, rename) by the first
        `length` bytes (all when None) of `content_from`, keeping owner, group and mode."""
        st = os.stat(path)
        tmp = path + ".fault-tmp"
        with open(content_from, "rb") as src, open(tmp, "wb") as dst:
            if length is None:
                shutil.copyfileobj(src, dst)
            else:
                dst.write(src.read(length))
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.rename(tmp, path)

    def holds_map_lock(self, process):
        """True when `process` holds an fcntl lock on the map's lock.mdb, as every process
        with the LMDB environment open does (LMDB's "a reader is here" lock). A process that
        opened the environment twice and closed one copy has lost it (issue 10, defect 3): the
        next writer then believes it is alone and may reset the reader table under it."""
        st = os.stat(self.map_file("lock.mdb"))
        want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
        with open("/proc/locks") as f:
            for line in f:
                fields = line.split()
                if "->" in fields:  # a waiter, not a holder
                    continue
                if len(fields) < 6 or fields[1] != "POSIX":
                    continue
                try:
                    pid = int(fields[4])
                    major, minor, inode = fields[5].split(":")
                    dev = (int(major, 16), int(minor, 16), int(inode))
                except ValueError:
                    continue
                if pid == process.pid and dev == want:
                    return True
        return False

    # ---- the end --------------------------------------------------------------------------

    def drain(self, timeout=90):
        """Flushes every relay's deferred mail and waits until all queues are empty."""
        deadline = time.monotonic() + timeout
        for relay in self.relays:
            while relay.queue_files():
                relay.flush()
                if time.monotonic() >= deadline:
                    break
                time.sleep(1)
        for relay in self.relays:
            relay.wait_queue_empty(max(5, deadline - time.monotonic()))

    def diagnostics(self):
        return self.lab.diagnostics()


# ---- the load -------------------------------------------------------------------------------

class Message:
    """One message of the load: its Message-ID, its recipients, and what the sender knows."""

    def __init__(self, message_id, recipients, relay):
        self.message_id = message_id
        self.recipients = list(recipients)
        self.relay = relay
        self.pending = list(recipients)   # not yet accepted by the relay (the sender keeps them)
        self.accepted = []                # accepted with 2xx after DATA
        self.refused_for_good = []        # (recipient, code, text): 5xx
        self.ambiguous = False            # connection lost after DATA was sent

    def expected(self, by_address):
        out = set()
        for r in self.recipients:
            local, _, domain = r.partition("@")
            base = local.split("+", 1)[0]
            out |= by_address[f"{base}@{domain}"].expected(r)
        return out


class Load:
    """Parallel SMTP sessions sending one new message after another until stop().

    Each message goes to one or two known users (some with a +extension), picked so that a
    scenario can leave a set of addresses alone (`exclude`). Replies are counted per phase
    ('before', 'fault', 'after'; set by the scenario) so a test can show the 4xx of the fault.
    """

    MAX_MESSAGES = 3000   # a bound, whatever happens

    def __init__(self, fault_lab, relays=None, exclude=(), clients_per_relay=CLIENTS_PER_RELAY):
        self.fl = fault_lab
        self.clients_per_relay = clients_per_relay
        self.relays = relays or fault_lab.relays
        exclude = set(exclude)
        self.contoso = [u for u in fault_lab.users
                        if u.domain == "contoso.com" and u.address not in exclude]
        self.northwind = [u for u in fault_lab.users
                          if u.domain == "northwind.com" and u.address not in exclude]
        self.messages = []
        self.lock = threading.Lock()
        self.phase = "before"
        self.replies = {}           # phase -> {'2xx'/'4xx'/'5xx': count}
        self.rejections = []        # (phase, stage, recipient, code, text) for 4xx/5xx
        self.errors = []            # connection trouble (str)
        self._stop = threading.Event()
        self._threads = []
        self._count = 0

    # ---- choosing ------------------------------------------------------------------------

    def _recipients(self, n):
        u = self.contoso[(n * 7919) % len(self.contoso)]
        first = u.address
        if n % 7 == 3 and not u.target:
            first = f"{u.local}+f{n % 13}@{u.domain}"
        if n % 5 == 4 and self.northwind:
            return [first, self.northwind[(n * 31) % len(self.northwind)].address]
        return [first]

    def new_message(self, relay):
        with self.lock:
            n = self._count
            self._count += 1
            m = Message(f"<fault-{self.fl.name}-{n}@coexist.test>", self._recipients(n), relay)
            self.messages.append(m)
            return m

    # ---- counting ------------------------------------------------------------------------

    def _count_reply(self, m, stage, recipient, code, text):
        cls = f"{code // 100}xx"
        with self.lock:
            bucket = self.replies.setdefault(self.phase, {})
            bucket[cls] = bucket.get(cls, 0) + 1
            if code >= 400:
                self.rejections.append((self.phase, m.relay.name, stage, recipient, code, text))

    def count(self, phase, cls, relay=None):
        """Replies of class cls ('4xx') in `phase`, of one relay (PostfixInstance) or all."""
        with self.lock:
            if relay is None:
                return self.replies.get(phase, {}).get(cls, 0)
            return sum(1 for p, name, _, _, code, _ in self.rejections
                       if p == phase and name == relay.name and f"{code // 100}xx" == cls)

    def sent(self):
        with self.lock:
            return sum(1 for m in self.messages if m.accepted)

    # ---- sending -------------------------------------------------------------------------

    def attempt(self, smtp, m):
        """One SMTP transaction for m's pending recipients on an open smtplib.SMTP. Returns
        True when the relay took responsibility for all of them."""
        code, text = smtp.mail(SENDER)
        text = text.decode(errors="replace")
        if code >= 400:
            self._count_reply(m, "MAIL", "", code, text)
            smtp.rset()
            if code >= 500:
                m.refused_for_good += [(r, code, text) for r in m.pending]
                m.pending = []
            return not m.pending
        ok = []
        for r in list(m.pending):
            code, text = smtp.rcpt(f"<{r}>")
            text = text.decode(errors="replace")
            self._count_reply(m, "RCPT", r, code, text)
            if 200 <= code < 300:
                ok.append(r)
            elif code >= 500:
                m.refused_for_good.append((r, code, text))
                m.pending.remove(r)
        if not ok:
            smtp.rset()
            return not m.pending
        body = make_message(SENDER, m.recipients, m.message_id, subject=f"fault {m.message_id}")
        try:
            code, text = smtp.data(body)
        except smtplib.SMTPDataError as e:  # DATA itself refused: the transaction is still open
            code, text = e.smtp_code, e.smtp_error
            smtp.rset()
        except (smtplib.SMTPServerDisconnected, OSError):
            m.ambiguous = True   # the relay may or may not have queued it
            raise
        text = text.decode(errors="replace") if isinstance(text, bytes) else text
        self._count_reply(m, "DATA", ",".join(ok), code, text)
        if 200 <= code < 300:
            m.accepted += ok
            m.pending = [r for r in m.pending if r not in ok]
        elif code >= 500:
            m.refused_for_good += [(r, code, text) for r in ok]
            m.pending = [r for r in m.pending if r not in ok]
        return not m.pending

    def _client(self, relay):
        smtp = None
        while not self._stop.is_set() and len(self.messages) < self.MAX_MESSAGES:
            try:
                if smtp is None:
                    smtp = smtplib.SMTP("127.0.0.1", relay.smtpd_port, timeout=60)
                    smtp.ehlo("load.test")
                m = self.new_message(relay)
                if not self.attempt(smtp, m):
                    # Refused: come back in a new session, as an MTA does. smtpd keeps a milter
                    # failure for the whole session and slows down a client with errors.
                    smtp = _close(smtp)
                    time.sleep(0.05)
            except (smtplib.SMTPException, OSError) as e:
                self.errors.append(f"{relay.name}: {type(e).__name__}: {e}")
                smtp = _close(smtp)
                time.sleep(0.1)
        _close(smtp)

    def start(self):
        for relay in self.relays:
            for _ in range(self.clients_per_relay):
                t = threading.Thread(target=self._client, args=(relay,), daemon=True)
                t.start()
                self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(90)
        alive = [t for t in self._threads if t.is_alive()]
        if alive:
            raise TimeoutError(f"{len(alive)} load clients still sending after 90s")

    def wait_sent(self, count, timeout=60):
        """Waits until `count` more messages have been accepted than now."""
        target = self.sent() + count
        h.wait_until(lambda: self.sent() >= target or self.exhausted(), timeout,
                     f"{count} more messages accepted ({self.sent()} so far)",
                     on_timeout=self.fl.diagnostics)

    def wait_replies(self, phase, cls, count, relays=None, timeout=60):
        """Waits until each of `relays` (default: all the load's) gave `count` replies of class
        cls ('4xx') in `phase`: the fault is seen by the senders."""
        relays = relays or self.relays

        def seen():
            return all(self.count(phase, cls, r) >= count for r in relays)

        h.wait_until(lambda: seen() or self.exhausted(), timeout,
                     f"{count} {cls} replies from each of {[r.name for r in relays]} in phase "
                     f"{phase}", on_timeout=lambda: f"replies so far: {self.replies}")
        if not seen():
            raise TimeoutError(f"the load sent its {self.MAX_MESSAGES} messages without "
                               f"{count} {cls} replies from each of {[r.name for r in relays]} "
                               f"in phase {phase}: {self.replies}")

    def exhausted(self):
        """The load reached its bound of messages: no use waiting for more."""
        with self.lock:
            return len(self.messages) >= self.MAX_MESSAGES

    def send_now(self, relay, recipients):
        """One message to `recipients` through `relay` in a session of its own, counted in the
        tally like the load's (refused recipients are retried by retry_refused)."""
        with self.lock:
            n = self._count
            self._count += 1
            m = Message(f"<fault-{self.fl.name}-{n}@coexist.test>", recipients, relay)
            self.messages.append(m)
        smtp = smtplib.SMTP("127.0.0.1", relay.smtpd_port, timeout=60)
        try:
            smtp.ehlo("check.test")
            self.attempt(smtp, m)
        finally:
            _close(smtp)
        return m

    def retry_refused(self, rounds=20):
        """The sender's MTA after the fault: sends every message's pending recipients again
        (same Message-ID) until the relay takes them, a bounded number of rounds."""
        self.phase = "retry"
        for _ in range(rounds):
            todo = [m for m in self.messages if m.pending and not m.ambiguous]
            if not todo:
                return
            for relay in self.relays:
                mine = [m for m in todo if m.relay is relay]
                if not mine:
                    continue
                smtp = None
                try:
                    smtp = smtplib.SMTP("127.0.0.1", relay.smtpd_port, timeout=60)
                    smtp.ehlo("retry.test")
                    for m in mine:
                        self.attempt(smtp, m)
                except (smtplib.SMTPException, OSError) as e:
                    self.errors.append(f"retry on {relay.name}: {type(e).__name__}: {e}")
                finally:
                    _close(smtp)
            time.sleep(0.5)


def _close(smtp):
    if smtp is not None:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
    return None


# ---- the tally ------------------------------------------------------------------------------

class Tally:
    """Compares every message's deliveries in the sinks with what its recipients must get."""

    def __init__(self, fault_lab, load):
        self.fl = fault_lab
        self.load = load
        delivered = {}   # message_id -> list of (sink, envelope recipient)
        # Postfix's own notices to the postmaster (notify_classes: resource, software), e.g.
        # the transcript of a session where cleanup met a lookup error: expected, not load.
        self.postmaster_notices = []
        for name, sink in fault_lab.sinks.items():
            for msg in sink.messages():
                if (msg.mail_from or "").startswith("double-bounce@") and \
                        all(r.startswith("postmaster@") for r in msg.recipients):
                    self.postmaster_notices.append(msg.header_values("Subject"))
                    continue
                for r in msg.recipients:
                    delivered.setdefault(msg.message_id, []).append((name, r))
        self.delivered = delivered
        self.lost, self.misrouted, self.duplicated = [], [], []
        self.still_pending, self.refused, self.ambiguous = [], [], []
        self.messages = len(load.messages)
        self.deliveries = 0
        known = set()
        for m in load.messages:
            known.add(m.message_id)
            got = delivered.get(m.message_id, [])
            self.deliveries += len(got)
            want = set()
            for r in m.accepted:
                want |= fault_lab.by_address[_base(r)].expected(r)
            if m.refused_for_good:
                self.refused.append((m.message_id, m.refused_for_good))
            if m.pending:
                self.still_pending.append((m.message_id, m.pending))
            if m.ambiguous:
                # The connection broke after DATA: the relay may have queued it. Whatever it
                # delivered must still be right and single.
                self.ambiguous.append(m.message_id)
                all_ok = m.expected(fault_lab.by_address)
                want = {d for d in got if d in all_ok} | want
            for d in sorted(want):
                if d not in got:
                    self.lost.append((m.message_id, d))
            for d in sorted(set(got)):
                if d not in want:
                    self.misrouted.append((m.message_id, d, m.recipients))
                if got.count(d) > 1:
                    self.duplicated.append((m.message_id, d, got.count(d)))
        self.strangers = {mid: d for mid, d in delivered.items() if mid not in known}

    def ok(self):
        return not (self.lost or self.misrouted or self.duplicated or self.refused
                    or self.still_pending or self.strangers)

    def summary(self):
        accepted = sum(1 for m in self.load.messages if m.accepted)
        return (f"messages={self.messages} accepted={accepted} deliveries={self.deliveries} "
                f"lost={len(self.lost)} misrouted={len(self.misrouted)} "
                f"duplicated={len(self.duplicated)} refused_5xx={len(self.refused)} "
                f"still_with_sender={len(self.still_pending)} ambiguous={len(self.ambiguous)} "
                f"unknown_messages_in_sinks={len(self.strangers)} "
                f"postmaster_notices={len(self.postmaster_notices)} replies={self.load.replies}")

    def report(self, limit=20):
        lines = [self.summary()]
        for title, items in (("LOST (message-id, (sink, rcpt))", self.lost),
                             ("MISROUTED (message-id, (sink, rcpt), recipients)", self.misrouted),
                             ("DUPLICATED (message-id, (sink, rcpt), copies)", self.duplicated),
                             ("REFUSED 5xx (message-id, [(rcpt, code, text)])", self.refused),
                             ("STILL WITH THE SENDER (message-id, rcpts)", self.still_pending)):
            if items:
                lines.append(f"{title}: {len(items)}")
                lines += [f"  {x}" for x in items[:limit]]
        if self.strangers:
            lines.append(f"MESSAGES IN SINKS NOT SENT BY THE LOAD: {len(self.strangers)}")
            lines += [f"  {k}: {v}" for k, v in list(self.strangers.items())[:limit]]
        return "\n".join(lines)


def _base(recipient):
    local, _, domain = recipient.partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


_REJECT = re.compile(r"(?:NOQUEUE: |[0-9A-Za-z]+: )(?:milter-)?reject: \S+ from [^:]*: (\d)\d\d ")


def maillog_rejects(relay):
    """(4xx lines, 5xx lines) of smtpd's reject log lines of `relay`."""
    four, five = [], []
    for line in relay.log().splitlines():
        m = _REJECT.search(line)
        if m:
            (four if m.group(1) == "4" else five if m.group(1) == "5" else []).append(line)
    return four, five
