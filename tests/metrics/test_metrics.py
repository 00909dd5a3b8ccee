#!/usr/bin/env python3
"""Metrics and shadow mode of both daemons, through a real Postfix (design 12, 13.6).

- MilterMetricsAndShadow: one lab, two milters and two relays sharing the sinks. The first
  milter serves /metrics: after the scenario table's mail, coexist_decisions_total by action
  equals what `coexist-map route` says of each recipient sent, lookups and the latency
  histogram count them all, the map's age is there. The second runs with [routing] shadow = yes:
  a migrated user's mail reaches Google with its original recipient and no trace header, an
  unknown user of a reject domain is accepted, and the log and coexist_shadow_decisions_total
  say what would have happened.
- PolicydMetricsAndShadow: coexist-policyd serving /metrics behind a Postfix that asks its
  policy service at RCPT and its socketmap for virtual_alias_maps and relay_recipient_maps;
  the policy service's counts equal the mail sent; the connections gauge follows a client that
  connects and leaves. The same with shadow = yes: nothing rewritten, nothing refused.
- MetricsConfiguration: metrics are off by default (the daemon listens on no TCP port of its
  own); a bad metrics_listen is a configuration error naming file, line and key; a port that
  is taken stops the daemon at start-up.
"""

import collections
import os
import re
import socket
import subprocess
import sys
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TESTS, "milter"))
sys.path.insert(0, os.path.join(TESTS, "policyd"))
sys.path.insert(0, os.path.join(TESTS, "harness"))

import milter_lab as ml  # noqa: E402
from coexist_harness.scenarios import DELIVERIES, UNKNOWN_IN_REJECT_DOMAIN, relay_routes  # noqa: E402

SENDER = "sender@fabrikam.example"
MIGRATED = "ann@contoso.com"


# ---- reading /metrics ---------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port):
    """{(name, frozenset(labels)): value} of http://127.0.0.1:PORT/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError(f"not a Prometheus text sample: {line!r}")
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def decisions(samples, service, family="coexist_decisions_total"):
    """{action: count} of one service, zeros left out."""
    out = {}
    for (name, labels), v in samples.items():
        d = dict(labels)
        if name == family and d.get("service") == service and v:
            out[d["action"]] = int(v)
    return out


def expected_actions(ini, recipients):
    """{action: count} as `coexist-map route` decides each recipient: the daemons call the same
    route(), so this is what they must count."""
    lines = ml.coexist_map(ini, "route", *recipients).splitlines()
    assert len(lines) == len(recipients), lines
    return dict(collections.Counter(line.split()[1] for line in lines))


def listening_tcp_ports(pid):
    """The TCP ports process `pid` listens on (its own sockets, from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def read(path):
    with open(path) as f:
        return f.read()


def add_line(path, after, line):
    text = read(path)
    assert after in text, (after, path)
    with open(path, "w") as f:
        f.write(text.replace(after, after + line + "\n", 1))


def wait_for(predicate, what, timeout=10):
    ml.h.wait_until(predicate, timeout, what)


class LabTestCase(unittest.TestCase):
    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        lab = getattr(type(self), "lab", None) or getattr(self, "lab", None)
        if lab and result and len(result.failures) + len(result.errors) > before:
            print(lab.diagnostics())
        return out


# ---- the milter ---------------------------------------------------------------------------

class MilterMetricsAndShadow(LabTestCase):
    @classmethod
    def setUpClass(cls):
        ml.require_binaries()
        ml.h.require_environment()
        cls.lab = ml.h.Lab("metrics-milter").__enter__()
        try:
            lab = cls.lab
            cls.sinks = ml.add_sinks(lab)
            # Counting milter, metrics on.
            cls.metrics_port = lab.free_port()
            cls.spec = f"inet:{lab.free_port()}@127.0.0.1"
            cls.ini = ml.write_ini(lab, "coexist.ini", cls.spec)
            add_line(cls.ini, "socket_mode = 0660\n", f"metrics_listen = 127.0.0.1:{cls.metrics_port}")
            ml.make_map(lab, cls.ini)
            cls.milter = ml.start_milter(lab, cls.ini)
            ml.h.wait_listening("127.0.0.1", int(cls.spec.split(":")[1].split("@")[0]))
            ml.h.wait_listening("127.0.0.1", cls.metrics_port)
            cls.relay = ml.add_relay(lab, cls.sinks, cls.spec)
            # Shadow milter on the same map, metrics on too.
            cls.shadow_metrics_port = lab.free_port()
            cls.shadow_spec = f"inet:{lab.free_port()}@127.0.0.1"
            cls.shadow_ini = ml.write_ini(lab, "shadow.ini", cls.shadow_spec)
            add_line(cls.shadow_ini, "socket_mode = 0660\n", f"metrics_listen = 127.0.0.1:{cls.shadow_metrics_port}")
            add_line(cls.shadow_ini, "loop_limit = 3\n", "shadow = yes")
            cls.shadow_milter = ml.start_milter(lab, cls.shadow_ini, name="shadow-milter")
            ml.h.wait_listening("127.0.0.1", int(cls.shadow_spec.split(":")[1].split("@")[0]))
            cls.shadow_relay = ml.add_relay(lab, cls.sinks, cls.shadow_spec, name="shadow-relay")
        except BaseException:
            cls.lab.__exit__(*sys.exc_info())
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.__exit__(None, None, None)

    def test_decisions_counted_equal_the_mail_sent(self):
        before = scrape(self.metrics_port)
        self.assertEqual(decisions(before, "milter"), {}, "nothing decided yet")
        # Every known action has its series from the start.
        self.assertEqual(value(before, "coexist_decisions_total", service="milter", action="rewrite"), 0)
        recipients = [rcpt for rcpt, _ in DELIVERIES] + ["someone@fabrikam.example"]
        sent = []
        for rcpt in recipients:
            r = self.relay.send(SENDER, [rcpt])
            self.assertEqual(r.rcpt[rcpt][0], 250, (rcpt, r))
            sent.append(r)
        u = self.relay.send(SENDER, [UNKNOWN_IN_REJECT_DOMAIN])
        self.assertEqual(u.rcpt[UNKNOWN_IN_REJECT_DOMAIN][0], 550, u)
        self.relay.wait_queue_empty()
        all_rcpts = recipients + [UNKNOWN_IN_REJECT_DOMAIN]
        expected = expected_actions(self.ini, all_rcpts)
        # Not vacuous: the mail covers each action but tempfail.
        self.assertTrue({"rewrite", "dual", "relay", "reject", "foreign"} <= set(expected), expected)
        after = scrape(self.metrics_port)
        self.assertEqual(decisions(after, "milter"), expected)
        self.assertEqual(decisions(after, "milter", "coexist_shadow_decisions_total"), {})
        self.assertEqual(value(after, "coexist_lookups_total"), len(all_rcpts))
        self.assertEqual(value(after, "coexist_lookup_duration_seconds_count"), len(all_rcpts))
        self.assertEqual(value(after, "coexist_lookup_duration_seconds_bucket", le="+Inf"), len(all_rcpts))
        self.assertGreater(value(after, "coexist_lookup_duration_seconds_sum"), 0)
        self.assertEqual(value(after, "coexist_tempfails_total"), 0)
        self.assertEqual(value(after, "coexist_map_open_errors_total"), 0)
        age = value(after, "coexist_map_age_seconds")
        self.assertIsNotNone(age, "map age missing")
        self.assertGreaterEqual(age, 0)
        # A hand-kept map: no directory sync age.
        self.assertIsNone(value(after, "coexist_directory_sync_age_seconds"))
        # And the mail really went where the counts say.
        for (rcpt, where), r in zip(DELIVERIES, sent):
            self.assertEqual(self.lab.where(r.message_id), where, rcpt)

    def test_shadow_mode_changes_nothing_and_says_what_it_would_do(self):
        r = self.shadow_relay.send(SENDER, [MIGRATED, "dave@contoso.com"])
        for rcpt in (MIGRATED, "dave@contoso.com"):
            self.assertEqual(r.rcpt[rcpt][0], 250, r)
        u = self.shadow_relay.send(SENDER, [UNKNOWN_IN_REJECT_DOMAIN])
        self.assertEqual(u.rcpt[UNKNOWN_IN_REJECT_DOMAIN][0], 250, u)  # would have been 550
        self.shadow_relay.wait_queue_empty()
        # The migrated user's mail lands at Google with its original recipient, as without coexist.
        self.assertEqual(self.lab.where(r.message_id),
                         {"google": sorted([MIGRATED, "dave@contoso.com"])})
        self.assertEqual(self.lab.where(u.message_id), {"google": [UNKNOWN_IN_REJECT_DOMAIN]})
        google = self.sinks["google"].messages(r.message_id)
        self.assertEqual(len(google), 1)
        self.assertEqual(google[0].header_values("X-Coexist-Trace"), [], "shadow mode adds no header")
        log = self.shadow_milter.log()
        self.assertRegex(log, r"to=<ann@contoso\.com>, action=rewrite, new=<ann@o365\.contoso\.com>.*, shadow=yes")
        self.assertRegex(log, r"to=<dave@contoso\.com>, action=dual, .*shadow=yes")
        self.assertRegex(log, r"to=<ghost@northwind\.com>, action=reject, .*shadow=yes")
        samples = scrape(self.shadow_metrics_port)
        self.assertEqual(decisions(samples, "milter", "coexist_shadow_decisions_total"),
                         {"rewrite": 1, "dual": 1, "reject": 1})
        self.assertEqual(decisions(samples, "milter"), {}, "shadow mode applies nothing")

    def test_shadow_mode_keeps_the_loop_guard(self):
        # Three trace headers (loop_limit) from relays that did route: still refused.
        trace = ("X-Coexist-Trace", "other.relay; id=1; Thu, 01 Jan 1970 00:00:00 +0000")
        r = self.shadow_relay.send(SENDER, [MIGRATED], extra_headers=[trace] * 3)
        self.assertEqual(r.data[0], 554, r)
        self.assertIn("5.4.6", r.data[1])


# ---- the policy daemon --------------------------------------------------------------------

class PolicydMetricsAndShadow(LabTestCase):
    def start(self, shadow):
        from policyd_fixture import Policyd
        ml.h.require_environment()
        self.metrics_port = ml.h.free_port()
        self.daemon = Policyd(unknown_recipient="reject",
                              extra_routing="shadow = yes" if shadow else "",
                              extra_policyd=f"metrics_listen = 127.0.0.1:{self.metrics_port}")
        self.addCleanup(self.daemon.close)
        self.daemon.start()
        ml.h.wait_listening("127.0.0.1", self.metrics_port)
        self.lab = ml.h.Lab("metrics-policyd").__enter__()
        self.addCleanup(self.lab.__exit__, None, None, None)
        self.lab._tell("pid", self.daemon.process.pid)  # killed even if the test is SIGKILLed
        self.sinks = {name: self.lab.add_sink(name) for name in ("google", "newsys")}
        spec = self.daemon.socketmap_spec()
        self.relay = self.lab.add_postfix("relay", routes=relay_routes(self.sinks), main_cf={
            "mynetworks": "10.255.255.0/24",  # loopback is not trusted: the restrictions run
            "smtpd_relay_restrictions": "reject_unauth_destination, "
                                        f"check_policy_service unix:{self.daemon.policy_path}",
            "virtual_alias_maps": f"socketmap:{spec}:virtual",
            "virtual_alias_domains": "",
            "relay_recipient_maps": f"socketmap:{spec}:recipients"})

    def test_policy_decisions_counted_equal_the_mail_sent(self):
        self.start(shadow=False)
        recipients = [rcpt for rcpt, _ in DELIVERIES]
        sent = []
        for rcpt in recipients:
            r = self.relay.send(SENDER, [rcpt])
            self.assertEqual(r.rcpt[rcpt][0], 250, (rcpt, r))
            sent.append(r)
        u = self.relay.send(SENDER, [UNKNOWN_IN_REJECT_DOMAIN])
        self.assertEqual(u.rcpt[UNKNOWN_IN_REJECT_DOMAIN][0], 550, u)
        self.relay.wait_queue_empty()
        for (rcpt, where), r in zip(DELIVERIES, sent):
            self.assertEqual(self.lab.where(r.message_id), where, rcpt)
        samples = scrape(self.metrics_port)
        # The policy service is asked once per RCPT (smtpd_relay_restrictions run first), the
        # refused one included: its counts are the mail received.
        all_rcpts = recipients + [UNKNOWN_IN_REJECT_DOMAIN]
        self.assertEqual(decisions(samples, "policy"), expected_actions(self.daemon.config, all_rcpts))
        # The socketmap tables are asked as Postfix needs them, some more than once: smtpd's
        # unlisted-recipient check asks relay_recipient_maps only for what virtual_alias_maps
        # did not answer (bob, relayed), cleanup's alias expansion asks virtual for every
        # rewritten recipient at least.
        self.assertGreaterEqual(decisions(samples, "recipients").get("relay", 0), 1, samples)
        rewrites = expected_actions(self.daemon.config, recipients)["rewrite"]
        self.assertGreaterEqual(decisions(samples, "virtual").get("rewrite", 0), rewrites)
        self.assertGreaterEqual(value(samples, "coexist_lookups_total"), 2 * len(all_rcpts))
        self.assertEqual(value(samples, "coexist_lookup_duration_seconds_count"),
                         value(samples, "coexist_lookups_total"))

    def test_connections_gauge_follows_a_client(self):
        self.start(shadow=False)
        def gauge():
            return value(scrape(self.metrics_port), "coexist_connections", protocol="policy")
        wait_for(lambda: gauge() is not None, "the policy connections gauge")
        base = gauge()
        with self.daemon.policy_socket():
            wait_for(lambda: gauge() == base + 1, "one more policy connection")
        wait_for(lambda: gauge() == base, "the connection gone again")

    def test_map_trouble_is_counted_and_deferred_except_in_shadow_mode(self):
        from policyd_fixture import Policyd
        for shadow in (False, True):
            with self.subTest(shadow=shadow):
                port = ml.h.free_port()
                daemon = Policyd(map_available=False, extra_routing="shadow = yes" if shadow else "",
                                 extra_policyd=f"metrics_listen = 127.0.0.1:{port}")
                self.addCleanup(daemon.close)
                daemon.start()
                ml.h.wait_listening("127.0.0.1", port)
                reply = daemon.ask_policy(MIGRATED)
                if shadow:
                    self.assertEqual(reply, "DUNNO")
                    self.assertEqual(daemon.ask_socketmap("virtual", MIGRATED), "NOTFOUND ")
                    self.assertEqual(daemon.ask_socketmap("recipients", MIGRATED), "OK shadow")
                else:
                    self.assertTrue(reply.startswith("DEFER_IF_PERMIT 4.3.0"), reply)
                    self.assertTrue(daemon.ask_socketmap("virtual", MIGRATED).startswith("TEMP "))
                samples = scrape(port)
                family = "coexist_shadow_decisions_total" if shadow else "coexist_decisions_total"
                self.assertEqual(decisions(samples, "policy", family), {"tempfail": 1})
                lookups = 3 if shadow else 2
                self.assertEqual(value(samples, "coexist_lookups_total"), lookups)
                self.assertEqual(value(samples, "coexist_tempfails_total"), lookups)
                self.assertEqual(value(samples, "coexist_map_open_errors_total"), lookups)
                self.assertIsNone(value(samples, "coexist_map_age_seconds"), "no map, no age")
                daemon.close()

    def test_shadow_mode_changes_nothing(self):
        self.start(shadow=True)
        r = self.relay.send(SENDER, [MIGRATED])
        self.assertEqual(r.rcpt[MIGRATED][0], 250, r)
        u = self.relay.send(SENDER, [UNKNOWN_IN_REJECT_DOMAIN])
        self.assertEqual(u.rcpt[UNKNOWN_IN_REJECT_DOMAIN][0], 250, u)  # would have been 550
        self.relay.wait_queue_empty()
        self.assertEqual(self.lab.where(r.message_id), {"google": [MIGRATED]})
        self.assertEqual(self.lab.where(u.message_id), {"google": [UNKNOWN_IN_REJECT_DOMAIN]})
        log = self.daemon.log()
        self.assertRegex(log, r"socketmap virtual: to=<ann@contoso\.com>, action=rewrite, "
                              r"new=<ann@o365\.contoso\.com>, reply=\"NOTFOUND\", shadow=yes, "
                              r"would_reply=\"OK ann@o365\.contoso\.com\"")
        self.assertRegex(log, r"socketmap recipients: to=<ghost@northwind\.com>, action=reject, .*"
                              r"reply=\"OK shadow\", shadow=yes, would_reply=\"NOTFOUND\"")
        self.assertRegex(log, r"to=<ghost@northwind\.com>, action=reject, .*reply=\"DUNNO\", shadow=yes, "
                              r"would_reply=\"550 5\.1\.1 User unknown\"")
        samples = scrape(self.metrics_port)
        self.assertEqual(decisions(samples, "policy", "coexist_shadow_decisions_total"),
                         {"rewrite": 1, "reject": 1})
        self.assertEqual(decisions(samples, "recipients", "coexist_shadow_decisions_total").get("reject"), 1)
        for service in ("policy", "virtual", "recipients"):
            self.assertEqual(decisions(samples, service), {}, service)


# ---- the directory follower ---------------------------------------------------------------

class FollowerMetricsTest(LabTestCase):
    def test_follower_counts_changes_held_removals_and_reconnects(self):
        from coexist_harness import slapd as s
        ml.require_binaries()
        ml.h.require_environment()
        why = s.missing_requirements()
        if why:
            self.skipTest(why)
        self.lab = lab = ml.h.Lab("metrics-follow").__enter__()
        self.addCleanup(lab.__exit__, None, None, None)
        ldap = s.Slapd(name="dir", lab=lab, provider=True)
        ldap.load_bulk(s.directory_ldif(["u1", "u2", "u3"], migrated=["u1"]))
        ldap.start()
        secret = lab.path("ldap.secret")
        with open(secret, "w") as f:
            f.write(s.SERVICE_PASSWORD + "\n")
        os.chmod(secret, 0o600)
        port = lab.free_port()
        ini = lab.path("coexist.ini")
        with open(ini, "w") as f:
            f.write(f"""[map]
path = {lab.path("map")}

[domain contoso.com]
routing_domain = o365.contoso.com

[directory]
uri = {ldap.uri}
bind_dn = {s.service_dn()}
bind_password_file = {secret}
base = ou=people,{s.SUFFIX}
alias_attributes = mailLocalAddress
migrated_group = {s.group_dn("migrated")}
dual_group = {s.group_dn("cutover")}
max_removals = 1
metrics_listen = 127.0.0.1:{port}
""")
        ml.coexist_map(ini, "init")
        follower = lab.spawn("follower", [ml.MAP_TOOL, "-c", ini, "sync", "--follow"])
        follower.wait_log(r"sync: following", timeout=120)
        ml.h.wait_listening("127.0.0.1", port)

        def changes(kind):
            return value(scrape(port), "coexist_follower_changes_total", change=kind)

        self.assertEqual(changes("added"), 3, "the initial refresh added the three users")
        self.assertEqual(value(scrape(port), "coexist_follower_removals_held"), 0)
        self.assertEqual(value(scrape(port), "coexist_follower_reconnects_total"), 0)
        self.assertIsNotNone(value(scrape(port), "coexist_map_age_seconds"))
        before = changes("changed")
        ldap.ldapmodify(f"dn: {s.group_dn('migrated')}\nchangetype: modify\nadd: member\n"
                        f"member: {s.people_dn('u2')}\n")
        wait_for(lambda: changes("changed") == before + 1, "u2's move to migrated counted", timeout=90)
        self.assertEqual(ml.coexist_map(ini, "route", "u2@contoso.com").split()[1], "rewrite")
        # Two users leave within a minute and max_removals is 1: one removed, one held.
        ldap.ldapdelete(s.people_dn("u3"))
        ldap.ldapdelete(s.people_dn("u1"))
        wait_for(lambda: value(scrape(port), "coexist_follower_removals_held") == 1, "one removal held", timeout=90)
        self.assertEqual(changes("removed"), 1)
        ldap.kill()
        wait_for(lambda: value(scrape(port), "coexist_follower_reconnects_total") >= 1,
                 "a reconnect counted after slapd died", timeout=90)


# ---- configuration ------------------------------------------------------------------------

class MetricsConfiguration(unittest.TestCase):
    def setUp(self):
        ml.require_binaries()
        ml.h.require_environment()
        self.lab = ml.h.Lab("metrics-config").__enter__()
        self.addCleanup(self.lab.__exit__, None, None, None)

    def milter_ini(self, name, metrics_line=None):
        ini = ml.write_ini(self.lab, name, f"inet:{self.lab.free_port()}@127.0.0.1")
        if metrics_line is not None:
            add_line(ini, "socket_mode = 0660\n", metrics_line)
        return ini

    def test_off_by_default(self):
        ini = self.milter_ini("coexist.ini")
        ml.make_map(self.lab, ini)
        milter = ml.start_milter(self.lab, ini)
        port = int(read(ini).split("socket = inet:")[1].split("@")[0])
        ml.h.wait_listening("127.0.0.1", port)
        self.assertEqual(listening_tcp_ports(milter.pid), {port})
        self.assertIn("metrics=off", milter.log())

    def test_policyd_off_by_default(self):
        from policyd_fixture import Policyd
        daemon = Policyd()
        self.addCleanup(daemon.close)
        daemon.start()
        # Its policy socket is a unix socket: the one TCP port is the socketmap's.
        self.assertEqual(listening_tcp_ports(daemon.process.pid), {daemon.socketmap_port})
        self.assertIn("metrics=off", daemon.log())

    def test_bad_metrics_listen_is_a_config_error(self):
        policyd = os.environ.get("COEXIST_POLICYD", "")
        for bad in ("9187", "localhost:9187", "127.0.0.1:0", "127.0.0.1:70000", "::1:9187", "127.0.0.1:"):
            ini = self.milter_ini("bad.ini", f"metrics_listen = {bad}")
            line = read(ini).splitlines().index(f"metrics_listen = {bad}") + 1
            for binary in (ml.MILTER, policyd):
                if not binary:
                    continue
                text = read(ini)
                if binary == policyd:  # the same key in [policyd]
                    text = text.replace("[milter]", "[policyd]").replace("socket = ", "policy_socket = ")
                    text = re.sub(r"\nsocket_group.*|\nsocket_mode.*", "", text)
                    with open(ini, "w") as f:
                        f.write(text)
                    line = text.splitlines().index(f"metrics_listen = {bad}") + 1
                with self.subTest(binary=os.path.basename(binary), value=bad):
                    r = subprocess.run([binary, "-n", "-c", ini], capture_output=True, text=True, timeout=30)
                    self.assertEqual(r.returncode, 2, r)
                    self.assertIn(f"{ini}:{line}: key 'metrics_listen'", r.stderr + r.stdout)

    def test_taken_port_stops_the_daemon(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            ini = self.milter_ini("coexist.ini", f"metrics_listen = 127.0.0.1:{taken.getsockname()[1]}")
            ml.make_map(self.lab, ini)
            r = subprocess.run([ml.MILTER, "-c", ini, "--stderr"], capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 3, r)
            self.assertIn("cannot listen", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
