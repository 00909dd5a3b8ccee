#!/usr/bin/env python3
"""The lab as an integration test: `lab up` must end with every flow passing, `lab down` must
leave nothing running and nothing on disk, and a second `up` must work as the first."""

import glob
import json
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(SOURCE, "contrib", "lab", "lab.py")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


class LabTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        self.base = tempfile.mkdtemp(prefix="coexist-labtest-")
        os.chmod(self.base, 0o755)
        self.env = dict(os.environ, COEXIST_LAB_DIR=os.path.join(self.base, "lab"))
        if len(sys.argv) > 1:
            self.env["COEXIST_BUILD_DIR"] = sys.argv[1]

    def tearDown(self):
        self.lab("down")
        os.rmdir(self.base)

    def lab(self, command):
        return subprocess.run([sys.executable, LAB, command], env=self.env, capture_output=True,
                              text=True, timeout=300)

    def started_pids(self):
        """The daemons' and sinks' pids from the lab's state, and each Postfix master's pid."""
        lab_dir = self.env["COEXIST_LAB_DIR"]
        with open(os.path.join(lab_dir, "lab.json")) as f:
            state = json.load(f)
        pids = list(state["pids"].values())
        for pid_file in glob.glob(os.path.join(lab_dir, "*", "queue", "pid", "master.pid")):
            with open(pid_file) as f:
                pids.append(int(f.read().strip()))
        return pids

    def up_and_down(self, replay_again=True):
        r = self.lab("up")
        print(r.stdout)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"\n(\d+) passed, 0 failed\n")
        self.assertNotIn("FAIL", r.stdout)
        # The live migration step is a group change in the directory, followed by the relay.
        self.assertRegex(r.stdout, r"relay's map follows the directory: gapps2@contoso.com -> "
                                   r"gapps2@o365.contoso.com after \d+ ms")
        # The weekend: batch wave1 scheduled ahead, flipped at its instant, rolled back.
        self.assertRegex(r.stdout, r"batch wave1: 2 users set to migrated at \S+Z \(in \d+ s\)")
        self.assertIn("After the instant: Internet -> GApps3", r.stdout)
        self.assertIn("batch wave1: 2 users set to source", r.stdout)
        # Transport mode: the same flows with recipients unchanged, and a queued message that
        # follows a rollback only there.
        self.assertRegex(r.stdout, r"Transport mode: Internet -> \+extension, domain alias .*"
                                   r"newsys:gapps1 +GApps1\+News@contoso\.net +relay > newsys +pass")
        self.assertRegex(r.stdout, r"Rewrite mode: queued, then rolled back .* newsys:gapps3 +"
                                   r"gapps3@o365\.contoso\.com +relay > newsys +pass")
        self.assertRegex(r.stdout, r"Transport mode: queued, then rolled back .* google:gapps3 +"
                                   r"gapps3@contoso\.com +relay > google +pass")
        pids = self.started_pids()
        self.assertEqual(len(pids), 8, pids)  # milter, policyd, internet sink, slapd, sync, 3 masters
        self.assertTrue(all(alive(p) for p in pids), pids)

        if replay_again:
            r = self.lab("run")  # a replay on the running lab passes again
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        r = self.lab("down")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([p for p in pids if alive(p)], [], "still running after down")
        self.assertFalse(os.path.exists(self.env["COEXIST_LAB_DIR"]))

    def test_up_down_twice(self):
        self.up_and_down()
        self.up_and_down(replay_again=False)  # the second up replays once; a third replay adds nothing


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
