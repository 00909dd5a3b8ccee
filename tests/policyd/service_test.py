#!/usr/bin/env python3
"""coexist-policyd as a service: the pre-flight check of -n, SIGHUP, sd_notify READY=1 and
STOPPING=1, and socketmap keys that are not addresses (each case failed before its fix)."""

import os
import signal
import socket
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from policyd_fixture import POLICYD, Policyd  # noqa: E402


def check(config):
    return subprocess.run([POLICYD, "-n", "-c", config], capture_output=True, text=True, timeout=60)


def edit_config(daemon, old, new):
    with open(daemon.config) as f:
        text = f.read()
    assert old in text, (old, text)
    with open(daemon.config, "w") as f:
        f.write(text.replace(old, new))


class PreflightTest(unittest.TestCase):
    """Before: -n exited 0 in each failing case below."""

    def daemon(self, **options):
        d = Policyd(**options)
        self.addCleanup(d.close)
        return d

    def test_good_setup_passes(self):
        r = check(self.daemon().config)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("is valid", r.stdout)

    def test_missing_map_fails(self):
        d = self.daemon(map_available=False)
        r = check(d.config)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("cannot be read as user 'nobody'", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(d.dir, "no-such-map")))

    def test_unknown_user_fails(self):
        d = self.daemon()
        edit_config(d, "user = nobody", "user = no-such-user-b")
        r = check(d.config)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("run-as user 'no-such-user-b' does not exist", r.stderr)

    def test_unknown_socket_group_fails(self):
        d = self.daemon()
        edit_config(d, "socket_group = postfix", "socket_group = no-such-group-b")
        r = check(d.config)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("socket group 'no-such-group-b'", r.stderr)

    def test_map_unreadable_for_the_user_fails(self):
        d = self.daemon()
        os.chown(d.map_dir, 0, 0)
        os.chmod(d.map_dir, 0o700)  # root reads it, nobody cannot
        r = check(d.config)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("Permission denied", r.stderr)


class ServiceTest(unittest.TestCase):
    def test_sighup_is_harmless(self):
        with Policyd() as d:
            d.process.send_signal(signal.SIGHUP)
            self.assertEqual(d.ask_policy("nobody@contoso.com"), "550 5.1.1 User unknown")
            self.assertTrue(d.alive(), d.log())

    def test_ready_once_listening_and_stopping_at_shutdown(self):
        d = Policyd()
        self.addCleanup(d.close)
        path = os.path.join(d.dir, "notify.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(path)
            os.chmod(path, 0o666)  # the daemon has dropped to nobody when it tells
            notify.settimeout(30)
            d.log_file = open(d.log_path, "wb")
            d.process = subprocess.Popen([POLICYD, "-c", d.config, "--stderr"], stdout=d.log_file,
                                         stderr=subprocess.STDOUT, env=dict(os.environ, NOTIFY_SOCKET=path))
            self.assertIn("READY=1", notify.recv(4096).decode().split("\n"))
            # READY means both listeners take connections now.
            self.assertEqual(d.ask_policy("nobody@contoso.com"), "550 5.1.1 User unknown")
            self.assertEqual(d.ask_socketmap("virtual", "ann@contoso.com"), "OK ann@o365.contoso.com")
            d.process.send_signal(signal.SIGTERM)
            self.assertIn("STOPPING=1", notify.recv(4096).decode().split("\n"))
            self.assertEqual(d.process.wait(10), 0)


class SocketmapKeysTest(unittest.TestCase):
    def test_unparseable_keys_are_not_found_in_a_reject_domain(self):
        # Before: "OK foreign" from the recipients table, so relay_recipient_maps accepted them.
        with Policyd(unknown_recipient="reject") as d:
            for key in ("nobody@contoso.com>", "<nobody@contoso.com", "nobody@conto so.com"):
                with self.subTest(key=key):
                    self.assertEqual(d.ask_socketmap("recipients", key), "NOTFOUND ")
                    self.assertEqual(d.ask_socketmap("virtual", key), "NOTFOUND ")
            self.assertEqual(d.ask_socketmap("recipients", "nobody@contoso.com"), "NOTFOUND ")
            self.assertEqual(d.ask_socketmap("recipients", "bob@contoso.com"), "OK relay")


if __name__ == "__main__":
    unittest.main(verbosity=2)
