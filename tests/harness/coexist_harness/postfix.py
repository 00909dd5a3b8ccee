"""A private Postfix instance on loopback: its own config, queue and data directories, its own
maillog, no port 25, no chroot, no DNS, nothing of the system Postfix touched.

Routing: `routes` maps a domain to a sink (or any next hop string); every other destination
(default, relay and bounces to foreign senders) goes to `default_sink`, or is refused with
error: when there is none; local delivery is always error:. Add or override any main.cf
parameter with `main_cf` (e.g. smtpd_milters, check_policy_service restrictions,
virtual_alias_maps = socketmap:inet:127.0.0.1:PORT:virtual) and any master.cf line with
`master_cf_extra`.
"""

import os
import pwd
import re
import subprocess
import time

from .ports import LOOPBACK4, LOOPBACK6, wait_listening, wait_until
from .smtp_client import SmtpSession

POSTFIX = "postfix"
QUEUE_SUBDIRS = ("maildrop", "incoming", "active", "deferred", "hold")

_DELIVERY = re.compile(
    r"postfix/(?P<service>[\w-]+)\[\d+\]: (?P<qid>[0-9A-Za-z]+): to=<(?P<to>[^>]*)>"
    r"(?:, orig_to=<(?P<orig_to>[^>]*)>)?, relay=(?P<relay>[^,]+),.*? status=(?P<status>\w+)"
    r"(?: \((?P<text>.*)\))?$")
_MESSAGE_ID = re.compile(r"postfix/cleanup\[\d+\]: (?P<qid>[0-9A-Za-z]+): message-id=(?P<mid>\S*)")


class Delivery:
    """One delivery attempt from the maillog: queue_id, to, orig_to (None when absent), relay,
    status ('sent', 'deferred', 'bounced', ...), text, service ('smtp', 'error', ...), line."""

    def __init__(self, m, line):
        self.queue_id = m.group("qid")
        self.to = m.group("to")
        self.orig_to = m.group("orig_to")
        self.relay = m.group("relay")
        self.status = m.group("status")
        self.text = m.group("text") or ""
        self.service = m.group("service")
        self.line = line

    def __repr__(self):
        return (f"Delivery({self.queue_id} to={self.to} orig_to={self.orig_to} "
                f"relay={self.relay} status={self.status})")


def tool_config_dir(directory):
    """A config directory (path) for Postfix's command-line tools (postmap, postconf) run outside
    any instance: a minimal main.cf of our own. Debian's postfix installed non-interactively has no
    /etc/postfix/main.cf, and a tool run without -c reads that file and exits 'fatal: open
    /etc/postfix/main.cf'; with one, it would read a machine's own settings into the test."""
    config_dir = os.path.join(directory, "postfix-tools")
    os.makedirs(config_dir, exist_ok=True)
    with open(os.path.join(config_dir, "main.cf"), "w") as f:
        f.write("compatibility_level = 3.6\n"
                "meta_directory = /etc/postfix\n"
                "smtp_dns_support_level = disabled\n")
    return config_dir


def postmap(config_dir, *args, timeout=30):
    """Runs `postmap -c CONFIG_DIR ARGS...`; returns the CompletedProcess (text, captured)."""
    return subprocess.run(["postmap", "-c", config_dir, *args], capture_output=True, text=True,
                          timeout=timeout)


def _next_hop(target):
    return target if isinstance(target, str) else target.next_hop


def routes_table(routes):
    """The harness's own transport table for `routes` ({domain: sink or next hop}): an inline:
    table spec for transport_maps, or "" when there are no routes. A test that puts its own
    table in front (transport_maps = socketmap:...:transport, <this>) uses it to keep these."""
    transport = ", ".join(f"{d}={_next_hop(t)}" for d, t in routes.items())
    return f"inline:{{ {transport} }}" if transport else ""


class PostfixInstance:
    """Created and started by Lab.add_postfix(); see the module docstring and Lab."""

    def __init__(self, name, directory, smtpd_port, routes=None, default_sink=None,
                 main_cf=None, master_cf_extra=(), smtpd_port6=None, myhostname=None):
        self.name = name
        self.directory = directory
        self.config_dir = os.path.join(directory, "etc")
        self.queue_dir = os.path.join(directory, "queue")
        self.data_dir = os.path.join(directory, "data")
        self.maillog = os.path.join(directory, "maillog")
        self.smtpd_port = smtpd_port
        self.smtpd_port6 = smtpd_port6
        self.routes = dict(routes or {})
        self.default_sink = default_sink
        self.myhostname = myhostname or f"{name}.relay.test"
        self.extra_main_cf = dict(main_cf or {})
        self.master_cf_extra = list(master_cf_extra)
        self.running = False

    # ---- configuration -------------------------------------------------------------------

    def main_cf(self):
        """The full main.cf parameters (dict) this instance runs with."""
        fallback = (_next_hop(self.default_sink) if self.default_sink is not None
                    else "error:5.1.2 test relay: no route for this destination")
        params = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "meta_directory": "/etc/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": self.myhostname,
            "mydomain": "relay.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "all",
            "mynetworks": "127.0.0.0/8 [::1]/128",
            "relay_domains": " ".join(self.routes),
            "transport_maps": routes_table(self.routes),
            "default_transport": fallback,
            "relay_transport": fallback,
            "local_transport": "error:5.1.1 test relay: no local delivery",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtp_dns_support_level": "disabled",
            "smtpd_peername_lookup": "no",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtp_connect_timeout": "5s",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0",
            "in_flow_delay": "0",
            "biff": "no",
            "append_dot_mydomain": "no",
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.directory,
            "milter_default_action": "tempfail",
        }
        params.update(self.extra_main_cf)
        return params

    def master_cf(self):
        smtpd = [f"{LOOPBACK4}:{self.smtpd_port} inet n - n - - smtpd"]
        if self.smtpd_port6:
            smtpd.append(f"[{LOOPBACK6}]:{self.smtpd_port6} inet n - n - - smtpd")
        services = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
""".splitlines()
        return "\n".join(smtpd + services + self.master_cf_extra) + "\n"

    def write_config(self):
        os.makedirs(self.config_dir, exist_ok=True)
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            for k, v in self.main_cf().items():
                f.write(f"{k} = {v}\n")
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write(self.master_cf())

    def set_main_cf(self, params, reload=True):
        """Adds/overrides main.cf parameters (dict) and, if running, reloads Postfix."""
        self.extra_main_cf.update(params)
        self.write_config()
        if reload and self.running:
            self._postfix("reload")
            time.sleep(0.5)  # master restarts its children lazily; give it a moment

    # ---- life cycle ----------------------------------------------------------------------

    def start(self, timeout=20, quick=False):
        """Starts Postfix. `postfix start` runs the integrity checks of `postfix check`
        (postfix-script check-fatal, check-warn: queue directories, permissions, postsuper's queue
        scan), a fatal one fails the start; they take seconds each time on a loaded machine.
        quick=True skips them, as `postfix quick-stop` arranges (the quick-start file in the
        queue directory): for a restart of an instance that already passed them."""
        for d in (self.directory, self.queue_dir, self.data_dir):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        pw = pwd.getpwnam("postfix")
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        open(self.maillog, "a").close()
        self.write_config()
        if quick:
            open(os.path.join(self.queue_dir, "quick-start"), "w").close()
        # `postfix start` now includes the integrity checks that a separate `postfix check` used
        # to run under its own 30 s: on a loaded CI machine (integration tests two at a time,
        # under ASan) the two together can take longer. A bound on a wait, not a timing assertion.
        self._postfix("start", timeout=120)
        self.running = True
        wait_listening(LOOPBACK4, self.smtpd_port, timeout, f"postfix {self.name} smtpd",)
        if self.smtpd_port6:
            wait_listening(LOOPBACK6, self.smtpd_port6, timeout, f"postfix {self.name} smtpd6")
        return self

    def stop(self):
        if not self.running:
            return
        from .guardian import stop_postfix
        stop_postfix(self.config_dir)
        self.running = False

    def _postfix(self, command, timeout=30):
        r = subprocess.run([POSTFIX, "-c", self.config_dir, command], capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"postfix -c {self.config_dir} {command} failed "
                               f"({r.returncode}): {r.stdout}{r.stderr}\n--- maillog:\n"
                               f"{self.log_tail()}")
        return r

    # ---- talking to it -------------------------------------------------------------------

    def session(self, helo="client.test", ipv6=False, timeout=30):
        """An SmtpSession to this instance's smtpd (several messages per session)."""
        if ipv6:
            return SmtpSession(LOOPBACK6, self.smtpd_port6, helo, timeout)
        return SmtpSession(LOOPBACK4, self.smtpd_port, helo, timeout)

    def send(self, sender, recipients, **kwargs):
        """Sends one message in its own SMTP session; returns its SendResult."""
        with self.session() as s:
            return s.send(sender, recipients, **kwargs)

    def flush(self):
        """Asks the queue manager to retry deferred mail now (postqueue -f)."""
        subprocess.run(["postqueue", "-c", self.config_dir, "-f"], capture_output=True,
                       timeout=30, check=False)

    # ---- what happened -------------------------------------------------------------------

    def queue_files(self):
        """Queue files still in maildrop/incoming/active/deferred/hold (paths)."""
        out = []
        for sub in QUEUE_SUBDIRS:
            for root, _, files in os.walk(os.path.join(self.queue_dir, sub)):
                out += [os.path.join(root, f) for f in files]
        return out

    def wait_queue_empty(self, timeout=30):
        wait_until(lambda: not self.queue_files(), timeout, f"postfix {self.name} queue to empty",
                   on_timeout=lambda: f"queue: {self.queue_files()}\n--- maillog:\n{self.log_tail()}")

    def log(self):
        try:
            with open(self.maillog, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_log(self, pattern, timeout=20):
        """Waits until the maillog matches `pattern` (regex); returns the match."""
        rx = re.compile(pattern, re.M)
        return wait_until(lambda: rx.search(self.log()), timeout,
                          f"maillog of {self.name} to match {pattern!r}",
                          on_timeout=self.log_tail)

    def queue_ids(self, message_id):
        """Queue ids cleanup logged for this Message-ID ('<...>')."""
        return [m.group("qid") for m in _MESSAGE_ID.finditer(self.log())
                if m.group("mid") == message_id]

    def deliveries(self, message_id=None):
        """Delivery attempts logged so far (list of Delivery), optionally of one message."""
        out = [Delivery(m, line) for line in self.log().splitlines()
               if (m := _DELIVERY.search(line))]
        if message_id is not None:
            qids = set(self.queue_ids(message_id))
            out = [d for d in out if d.queue_id in qids]
        return out

    def wait_deliveries(self, message_id, count, status="sent", timeout=30):
        """Waits until `count` deliveries of this message with `status` are logged."""
        def done():
            ds = [d for d in self.deliveries(message_id) if d.status == status]
            return ds if len(ds) >= count else None
        return wait_until(done, timeout, f"{count} {status} deliveries of {message_id}",
                          on_timeout=self.log_tail)

    def __repr__(self):
        return f"PostfixInstance({self.name!r}, smtpd=127.0.0.1:{self.smtpd_port})"
