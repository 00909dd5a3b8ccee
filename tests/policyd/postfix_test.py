"""coexist-policyd through a real Postfix 3.7.

- PostmapAgreementTest: `postmap -q KEY socketmap:...:virtual` (Postfix's own socketmap client)
  agrees with `coexist-map route KEY` for every scenario key, and so does `:recipients`.
- PolicyServiceTest: a private Postfix with check_policy_service and unknown_recipient = reject;
  the SMTP transcript shows 550 5.1.1 for an unknown recipient at RCPT, the known ones accepted;
  with the map unreadable, a 4xx at RCPT.
- SocketmapRoutingTest: a private Postfix with no milter at all, virtual_alias_maps and
  relay_recipient_maps on our socketmap; the scenario table shared with the milter tests
  (coexist_harness/scenarios.py: migrated, source, explicit target, dual, alias, +extension,
  domain alias, second domain; unknown users) lands in the same sinks with the same envelope
  recipients.

The private Postfix, its sinks and the SMTP client come from tests/harness (coexist_harness).
"""

import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "harness"))
from policyd_fixture import Policyd, run_map  # noqa: E402
from blackbox_test import KEYS  # noqa: E402
from coexist_harness.scenarios import (DELIVERIES, UNKNOWN_IN_REJECT_DOMAIN,  # noqa: E402
                                       relay_routes)


def postmap_query(config_dir, key, table_spec):
    """(exit status, value) of `postmap -c CONFIG_DIR -q KEY TABLE`, Postfix's own client."""
    from coexist_harness import postmap
    r = postmap(config_dir, "-q", key, table_spec)
    if r.returncode not in (0, 1) or r.stderr.strip():
        raise AssertionError(f"postmap -q {key} {table_spec}: exit {r.returncode}: {r.stderr}")
    return r.returncode, r.stdout.rstrip("\n")


class PostmapAgreementTest(unittest.TestCase):
    def setUp(self):
        self.daemon = Policyd(unknown_recipient="reject")
        self.addCleanup(self.daemon.close)
        self.daemon.start()

    def test_postmap_agrees_with_coexist_map_route(self):
        from coexist_harness import tool_config_dir
        config_dir = tool_config_dir(self.daemon.dir)
        # coexist-map route refuses what is not an address (exit 2, design 13.6): those keys
        # (bare domains, "*") are asked of the tables without a route line, and get NOTFOUND.
        addresses = [k for k in KEYS if "@" in k]
        lines = dict(zip(addresses, run_map(self.daemon.config, "route", *addresses).stdout.splitlines()))
        routes = [lines.get(key, f"{key} -") for key in KEYS]
        self.assertEqual(len(lines), len(addresses))
        virtual = f"socketmap:{self.daemon.socketmap_spec()}:virtual"
        recipients = f"socketmap:{self.daemon.socketmap_spec()}:recipients"
        for key, line in zip(KEYS, routes):
            with self.subTest(key=key, route=line):
                fields = line.split()
                self.assertEqual(fields[0], key)
                action = fields[1]
                is_address = "@" in key
                status, value = postmap_query(config_dir, key, virtual)
                if is_address and action == "rewrite":
                    self.assertEqual((status, value), (0, fields[2]))
                elif is_address and action == "dual":
                    self.assertEqual((status, value), (0, f"{key},{fields[2]}"))
                else:
                    self.assertEqual((status, value), (1, ""))
                status, value = postmap_query(config_dir, key, recipients)
                if is_address and action != "reject":
                    self.assertEqual((status, value), (0, f"OK {action}"[3:]))
                else:
                    self.assertEqual((status, value), (1, ""))
        # Not vacuous: the table has each kind of answer.
        actions = {line.split()[1] for line in routes}
        self.assertTrue({"rewrite", "dual", "relay", "reject", "foreign"} <= actions, actions)



def harness():
    from coexist_harness import Lab, require_environment
    require_environment()
    return Lab


class PostfixTestCase(unittest.TestCase):
    unknown_recipient = "reject"
    map_available = True

    def setUp(self):
        self.Lab = harness()
        self.daemon = Policyd(unknown_recipient=self.unknown_recipient, map_available=self.map_available)
        self.addCleanup(self.daemon.close)
        self.daemon.start()

    def start_lab(self, main_cf):
        Lab = self.Lab
        self.lab = Lab("policyd").__enter__()
        self.addCleanup(self.lab.__exit__, None, None, None)
        self.lab._tell("pid", self.daemon.process.pid)  # killed even if the test is SIGKILLed
        sinks = {name: self.lab.add_sink(name) for name in ("google", "newsys")}
        return self.lab.add_postfix("relay", routes=relay_routes(sinks), main_cf=main_cf)


class PolicyServiceTest(PostfixTestCase):
    def test_unknown_recipient_gets_550_at_rcpt(self):
        relay = self.start_lab({
            "mynetworks": "10.255.255.0/24",  # loopback is not trusted: the restrictions run
            "smtpd_relay_restrictions": "reject_unauth_destination, "
                                        f"check_policy_service unix:{self.daemon.policy_path}"})
        r = relay.send("x@fabrikam.example", ["ann@contoso.com", "x@contoso.com", "bob@contoso.com",
                                              "dan@contoso.com"])
        self.assertEqual(r.rcpt["x@contoso.com"][0], 550, r)
        self.assertTrue(r.rcpt["x@contoso.com"][1].startswith("5.1.1 <x@contoso.com>"), r)
        for ok in ("ann@contoso.com", "bob@contoso.com", "dan@contoso.com"):
            self.assertEqual(r.rcpt[ok][0], 250, r)
        self.assertTrue(r.queued, r)
        self.assertIn("to=<x@contoso.com>, action=reject", self.daemon.log())


class PolicyServiceMapUnavailableTest(PostfixTestCase):
    map_available = False

    def test_map_unreadable_gives_4xx_at_rcpt(self):
        relay = self.start_lab({
            "mynetworks": "10.255.255.0/24",
            "smtpd_relay_restrictions": "reject_unauth_destination, "
                                        f"check_policy_service unix:{self.daemon.policy_path}"})
        r = relay.send("x@fabrikam.example", ["ann@contoso.com", "x@contoso.com"])
        for rcpt in ("ann@contoso.com", "x@contoso.com"):
            self.assertEqual(r.rcpt[rcpt][0] // 100, 4, r)
            self.assertIn("4.3.0", r.rcpt[rcpt][1])


class SocketmapRoutingTest(PostfixTestCase):
    def test_scenarios_reach_the_same_sinks_without_a_milter(self):
        spec = self.daemon.socketmap_spec()
        relay = self.start_lab({
            "virtual_alias_maps": f"socketmap:{spec}:virtual",
            "virtual_alias_domains": "",
            "relay_recipient_maps": f"socketmap:{spec}:recipients"})
        results = []
        for rcpt, expected in DELIVERIES:
            r = relay.send("x@fabrikam.example", [rcpt])
            self.assertEqual(r.rcpt[rcpt][0], 250, (rcpt, r))
            self.assertTrue(r.queued, r)
            results.append((rcpt, expected, r))
        for unknown in ("x@contoso.com", UNKNOWN_IN_REJECT_DOMAIN):
            u = relay.send("x@fabrikam.example", [unknown])
            self.assertEqual(u.rcpt[unknown][0], 550, u)
            self.assertIn("5.1.1", u.rcpt[unknown][1])
        relay.wait_queue_empty()
        for rcpt, expected, r in results:
            with self.subTest(rcpt=rcpt):
                self.assertEqual(self.lab.where(r.message_id), expected)


if __name__ == "__main__":
    unittest.main(verbosity=2)
