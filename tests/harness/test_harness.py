#!/usr/bin/env python3
"""Self-test of the harness: a plain private Postfix routes by domain to the right sinks, the
log helpers see what happened, and a SIGKILLed test leaves nothing behind."""

import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coexist_harness as h  # noqa: E402


class PlainPostfixRouting(unittest.TestCase):
    def test_routes_by_domain_and_reports_where(self):
        with h.Lab("harness") as lab:
            google, newsys, internet = (lab.add_sink(n) for n in ("google", "newsys", "internet"))
            relay = lab.add_postfix("relay", routes={"contoso.com": google,
                                                     "o365.contoso.com": newsys},
                                    default_sink=internet, ipv6_smtpd=True)
            r = relay.send("x@fabrikam.example",
                           ["ann@contoso.com", "ann@o365.contoso.com",
                            ("zed@fabrikam.example", ["NOTIFY=NEVER"])])
            self.assertEqual(r.rcpt["ann@contoso.com"][0], 250)
            self.assertTrue(r.queued, r)
            with relay.session(ipv6=True) as s:      # two messages, one session, over ::1
                r2 = s.send("x@fabrikam.example", ["bob@contoso.com"])
                r3 = s.send("x@fabrikam.example", ["nobody@elsewhere.example"])
            relay.wait_queue_empty()
            self.assertEqual(lab.where(r.message_id), {
                "google": ["ann@contoso.com"], "newsys": ["ann@o365.contoso.com"],
                "internet": ["zed@fabrikam.example"]})
            self.assertEqual(lab.where(r2.message_id), {"google": ["bob@contoso.com"]})
            self.assertEqual(lab.where(r3.message_id), {"internet": ["nobody@elsewhere.example"]})
            msg = internet.messages(r.message_id)[0]
            self.assertEqual(msg.mail_from, "x@fabrikam.example")
            self.assertEqual(msg.rcpt_params("zed@fabrikam.example")["NOTIFY"], "NEVER")
            ds = relay.wait_deliveries(r.message_id, 3)
            self.assertEqual(sorted(d.to for d in ds),
                             ["ann@contoso.com", "ann@o365.contoso.com", "zed@fabrikam.example"])
            self.assertIn(r.queue_id, relay.queue_ids(r.message_id))

    def test_unrouted_destination_is_refused_without_default_sink(self):
        with h.Lab("harness") as lab:
            google = lab.add_sink("google")
            relay = lab.add_postfix("relay", routes={"contoso.com": google})
            r = relay.send("x@contoso.com", ["a@contoso.com"])
            relay.wait_queue_empty()
            self.assertEqual(lab.where(r.message_id), {"google": ["a@contoso.com"]})
            # a destination with no route is refused at RCPT (error: default transport)
            r = relay.send("x@contoso.com", ["a@fabrikam.example"])
            self.assertEqual(r.rcpt["a@fabrikam.example"][0], 550)
            self.assertIn("5.1.2", r.rcpt["a@fabrikam.example"][1])
            self.assertIsNone(r.data)


CHILD = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
import coexist_harness as h
with h.Lab("harness-kill") as lab:
    lab.add_postfix("relay", routes={"contoso.com": lab.add_sink("google")})
    print(lab.directory, lab.postfixes["relay"].queue_dir, flush=True)
    time.sleep(120)
"""


class CleanupAfterKill(unittest.TestCase):
    def test_sigkill_leaves_nothing_running(self):
        child = subprocess.Popen([sys.executable, "-c", CHILD, os.path.dirname(
            os.path.abspath(__file__))], stdout=subprocess.PIPE, text=True)
        try:
            directory, queue = child.stdout.readline().split()
            with open(os.path.join(queue, "pid", "master.pid")) as f:
                master = int(f.read())
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            h.wait_until(lambda: not os.path.exists(directory), 30, "guardian cleanup")
            h.wait_until(lambda: not os.path.exists(f"/proc/{master}"), 10, "master gone")
        finally:
            if child.poll() is None:
                child.kill()
            child.stdout.close()


if __name__ == "__main__":
    h.require_environment()
    unittest.main(verbosity=2)
