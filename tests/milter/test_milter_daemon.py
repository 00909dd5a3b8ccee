#!/usr/bin/env python3
"""coexist-milter as a daemon: inet6, a unix socket with owner/group/mode and a stale socket
file, refusing to remove what is not a stale socket, SIGTERM (also while starting), and the
command line."""

import grp
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
import unittest

from milter_lab import (DAEMON_USER, MILTER, SENDER, add_relay, add_sinks, h, make_map,
                        require_binaries, start_milter, write_ini)


def cli(*args):
    return subprocess.run([MILTER, *args], capture_output=True, text=True, timeout=30)


class DaemonBasics(unittest.TestCase):
    def test_inet6_socket(self):
        with h.Lab("milter6") as lab:
            sinks = add_sinks(lab)
            port = lab.free_port("::1")
            spec = f"inet6:{port}@::1"
            ini = write_ini(lab, "coexist.ini", spec)
            make_map(lab, ini)
            milter = start_milter(lab, ini)
            h.wait_listening("::1", port)
            relay = add_relay(lab, sinks, spec)
            r = relay.send(SENDER, ["ann@contoso.com", "bob@contoso.com"])
            self.assertTrue(r.queued, r)
            relay.wait_queue_empty()
            self.assertEqual(lab.where(r.message_id), {"newsys": ["ann@o365.contoso.com"],
                                                       "google": ["bob@contoso.com"]})
            milter.signal(signal.SIGTERM)
            self.assertEqual(milter.wait(10), 0)
            self.assertIn("coexist-milter stopped", milter.log())

    def test_unix_socket_owner_group_mode_and_stale_file(self):
        with h.Lab("milterunix") as lab:
            sinks = add_sinks(lab)
            path = lab.path("milter.sock")
            # a stale socket file: bound, never listened on, left behind
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stale.bind(path)
            stale.close()
            ini = write_ini(lab, "coexist.ini", f"unix:{path}", group="postfix", mode="0660")
            make_map(lab, ini)
            milter = start_milter(lab, ini)
            h.wait_until(lambda: h.ports.is_listening_unix(path), 10, "unix socket")
            st = os.stat(path)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
            self.assertEqual(st.st_uid, pwd.getpwnam(DAEMON_USER).pw_uid)
            self.assertEqual(st.st_gid, grp.getgrnam("postfix").gr_gid)
            # the milter itself runs as the configured user
            with open(f"/proc/{milter.pid}/status") as f:
                uid_line = next(l for l in f if l.startswith("Uid:"))
            self.assertEqual(int(uid_line.split()[1]), pwd.getpwnam(DAEMON_USER).pw_uid)
            relay = add_relay(lab, sinks, f"unix:{path}")   # Postfix (user postfix) connects
            r = relay.send(SENDER, ["dave@contoso.com"])
            relay.wait_queue_empty()
            self.assertEqual(lab.where(r.message_id), {"google": ["dave@contoso.com"],
                                                       "newsys": ["dave@o365.contoso.com"]})
            # a second milter must not steal the live socket
            second = start_milter(lab, ini, name="second", wait=False)
            self.assertEqual(second.wait(10), 3)
            self.assertIn("in use", second.log())
            milter.signal(signal.SIGINT)
            self.assertEqual(milter.wait(10), 0)

    def test_stop_while_starting(self):
        # SIGTERM the moment the socket file exists: the milter is still starting (dropping
        # root, opening the map, logging its summary). The signal must wait for libmilter and
        # stop the filter cleanly (status 0, "stopped"), not end it by the default action (-15).
        with h.Lab("milterstart") as lab:
            path = lab.path("milter.sock")
            ini = write_ini(lab, "coexist.ini", f"unix:{path}", group="postfix", mode="0660")
            make_map(lab, ini)
            for attempt in range(5):
                if os.path.exists(path):
                    os.unlink(path)   # left by the previous attempt only if it failed
                milter = start_milter(lab, ini, name=f"milter{attempt}", wait=False)
                deadline = time.monotonic() + 15
                while not os.path.exists(path) and milter.alive() and time.monotonic() < deadline:
                    pass   # no sleep: the window is a few milliseconds wide
                self.assertTrue(os.path.exists(path), milter.log())
                milter.signal(signal.SIGTERM)
                # 0; not -15. (A SIGTERM that meets libmilter's own start-up, between its signal
                # thread and its listener, still ends in "Unable to bind", exit 3: libmilter's
                # window, microseconds wide; the milter's own start-up is closed.)
                status = milter.wait(10)
                self.assertIn(status, (0, 3), f"attempt {attempt}: {milter.log()}")
                self.assertIn("coexist-milter stopped", milter.log())

    def test_refuses_to_remove_a_regular_file(self):
        with h.Lab("milterfile") as lab:
            path = lab.path("not-a-socket")
            with open(path, "w") as f:
                f.write("precious\n")
            ini = write_ini(lab, "coexist.ini", f"unix:{path}")
            make_map(lab, ini)
            p = start_milter(lab, ini, wait=False)
            self.assertEqual(p.wait(10), 3)
            self.assertIn("not a socket", p.log())
            with open(path) as f:
                self.assertEqual(f.read(), "precious\n")
            # Started by hand without --stderr, a fatal start error is said there too (helper
            # 69: exit 3 with nothing printed; the line went only to syslog).
            r = cli("-c", ini)
            self.assertEqual(r.returncode, 3, r.stderr)
            self.assertIn("coexist-milter: fatal:", r.stderr)
            self.assertIn("not a socket", r.stderr)

    def test_command_line(self):
        with h.Lab("millercli") as lab:
            good = write_ini(lab, "good.ini", "inet:8891@127.0.0.1")
            make_map(lab, good)  # -n also checks that the map is readable
            r = cli("-n", "-c", good)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("configuration OK", r.stdout)
            bad = lab.path("bad.ini")
            with open(bad, "w") as f:
                f.write(open(good).read().replace("loop_limit = 3", "loop_limt = 3"))
            for start in (["-n"], []):  # -n, and a start without --stderr: said on stderr
                r = cli(*start, "-c", bad)
                self.assertEqual(r.returncode, 2)
                self.assertIn("bad.ini:", r.stderr)
                self.assertIn("loop_limt", r.stderr)
            badsock = write_ini(lab, "badsock.ini", "inet:notaport@127.0.0.1")
            self.assertEqual(cli("-n", "-c", badsock).returncode, 2)
            self.assertEqual(cli("-n", "-c", lab.path("missing.ini")).returncode, 2)
            r = cli("--version")
            self.assertEqual(r.returncode, 0)
            self.assertRegex(r.stdout, r"^coexist-milter \d+\.\d+")
            r = cli("--help")
            self.assertEqual(r.returncode, 0)
            self.assertIn("--config", r.stdout)
            self.assertEqual(cli("--no-such-option").returncode, 1)


if __name__ == "__main__":
    h.require_environment()
    require_binaries()
    unittest.main(verbosity=2)
