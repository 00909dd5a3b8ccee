#!/usr/bin/env python3
"""coexist-milter as a service: the pre-flight check of -n (each way start-up would fail or
all mail be deferred), SIGHUP that must not stop the filter (libmilter stops on it), and the
sd_notify READY=1 / STOPPING=1 a Type=notify unit waits for."""

import os
import signal
import socket
import subprocess
import unittest

from milter_lab import (MILTER, SENDER, add_relay, add_sinks, h, make_map, require_binaries,
                        start_milter, write_ini)


def check(ini):
    return subprocess.run([MILTER, "-n", "-c", ini], capture_output=True, text=True, timeout=60)


def rewrite_ini(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text, (old, text)
    with open(path, "w") as f:
        f.write(text.replace(old, new))


class Preflight(unittest.TestCase):
    """Before: -n said "configuration OK" (exit 0) in every one of these cases."""

    def test_good_setup_passes(self):
        with h.Lab("mpre-good") as lab:
            ini = write_ini(lab, "coexist.ini", "inet:8891@127.0.0.1")
            make_map(lab, ini)
            r = check(ini)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("configuration OK", r.stdout)

    def test_missing_map_fails(self):
        with h.Lab("mpre-nomap") as lab:
            ini = write_ini(lab, "coexist.ini", "inet:8891@127.0.0.1")
            r = check(ini)
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
            self.assertIn(f"map {lab.path('map')} cannot be read as user 'nobody'", r.stderr)
            self.assertFalse(os.path.exists(lab.path("map")))  # and it was not created

    def test_unknown_user_fails(self):
        with h.Lab("mpre-user") as lab:
            ini = write_ini(lab, "coexist.ini", "inet:8891@127.0.0.1")
            make_map(lab, ini)
            rewrite_ini(ini, "user = nobody", "user = no-such-user-b")
            r = check(ini)
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
            self.assertIn("run-as user 'no-such-user-b' does not exist", r.stderr)

    def test_unknown_socket_group_fails(self):
        with h.Lab("mpre-group") as lab:
            ini = write_ini(lab, "coexist.ini", f"unix:{lab.path('milter.sock')}", group="no-such-group-b")
            make_map(lab, ini)
            r = check(ini)
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
            self.assertIn("socket group 'no-such-group-b'", r.stderr)

    def test_map_unreadable_for_the_user_fails(self):
        with h.Lab("mpre-perm") as lab:
            ini = write_ini(lab, "coexist.ini", "inet:8891@127.0.0.1")
            map_dir = make_map(lab, ini)
            os.chmod(map_dir, 0o700)  # root can read it, nobody cannot
            r = check(ini)
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
            self.assertIn("cannot be read as user 'nobody'", r.stderr)
            self.assertIn("Permission denied", r.stderr)


class Signals(unittest.TestCase):
    def test_sighup_is_harmless(self):
        # Before: libmilter's signal thread took SIGHUP as "stop"; Postfix then answered 451
        # to every message until someone restarted the milter.
        with h.Lab("msighup") as lab:
            sinks = add_sinks(lab)
            port = lab.free_port()
            spec = f"inet:{port}@127.0.0.1"
            ini = write_ini(lab, "coexist.ini", spec)
            make_map(lab, ini)
            milter = start_milter(lab, ini)
            h.wait_listening("127.0.0.1", port)
            relay = add_relay(lab, sinks, spec)
            milter.signal(signal.SIGHUP)
            milter.signal(signal.SIGHUP)
            r = relay.send(SENDER, ["ann@contoso.com"])
            self.assertTrue(r.queued, r)
            relay.wait_queue_empty()
            self.assertEqual(lab.where(r.message_id), {"newsys": ["ann@o365.contoso.com"]})
            self.assertTrue(milter.alive(), milter.log())
            self.assertNotIn("stopped", milter.log())
            milter.signal(signal.SIGTERM)
            self.assertEqual(milter.wait(10), 0)
            self.assertIn("coexist-milter stopped", milter.log())


class Notify(unittest.TestCase):
    def test_ready_once_listening_and_stopping_at_shutdown(self):
        with h.Lab("mnotify") as lab:
            port = lab.free_port()
            ini = write_ini(lab, "coexist.ini", f"inet:{port}@127.0.0.1")
            make_map(lab, ini)
            path = lab.path("notify.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
                notify.bind(path)
                os.chmod(path, 0o666)  # the milter has dropped to nobody when it tells
                notify.settimeout(30)
                env = dict(os.environ, NOTIFY_SOCKET=path)
                milter = lab.spawn("milter", [MILTER, "-c", ini, "--stderr"], env=env)
                message = notify.recv(4096).decode()
                self.assertIn("READY=1", message.split("\n"))
                # READY means Postfix can connect now.
                self.assertTrue(h.ports.is_listening("127.0.0.1", port), milter.log())
                milter.signal(signal.SIGTERM)
                self.assertIn("STOPPING=1", notify.recv(4096).decode().split("\n"))
                self.assertEqual(milter.wait(10), 0)


if __name__ == "__main__":
    h.require_environment()
    require_binaries()
    unittest.main(verbosity=2)
