#!/usr/bin/env python3
"""coexist-milter through a real Postfix: which sink gets which envelope recipient, the SMTP
replies, orig_to= in the delivery log, live map changes, an unreadable map, loops."""

import os
import re
import time
import unittest

from milter_lab import (SENDER, add_relay, add_sinks, coexist_map, h, make_map,
                        require_binaries, start_milter, write_ini)
from coexist_harness.scenarios import DELIVERIES, UNKNOWN_IN_REJECT_DOMAIN, USERS


class MilterThroughPostfix(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = h.Lab("milter").__enter__()
        try:
            lab = cls.lab
            cls.sinks = add_sinks(lab)
            cls.spec = f"inet:{lab.free_port()}@127.0.0.1"
            cls.ini = write_ini(lab, "coexist.ini", cls.spec)
            cls.map_dir = make_map(lab, cls.ini)
            cls.milter = start_milter(lab, cls.ini)
            h.wait_listening("127.0.0.1", int(cls.spec.split(":")[1].split("@")[0]))
            cls.relay = add_relay(lab, cls.sinks, cls.spec)
        except BaseException:
            cls.lab.__exit__(*__import__("sys").exc_info())
            raise

    @classmethod
    def tearDownClass(cls):
        cls.lab.__exit__(None, None, None)

    def setUp(self):
        self.assertTrue(self.milter.alive(), self.milter.log())

    def run(self, result=None):
        # On failure, show what Postfix and the milter said.
        before = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            print(self.lab.diagnostics())
        return out

    # ---- helpers ----------------------------------------------------------------------------

    def deliver(self, recipients, **kwargs):
        r = self.relay.send(SENDER, recipients, **kwargs)
        self.relay.wait_queue_empty()
        return r

    def where(self, r):
        return self.lab.where(r.message_id)

    def assert_one_copy_per_sink(self, r):
        for name, sink in self.sinks.items():
            self.assertLessEqual(len(sink.messages(r.message_id)), 1, f"{name} got duplicates")

    # ---- routing ----------------------------------------------------------------------------

    def test_scenario_table(self):
        """The table the policyd suite also runs through its socketmap: same sinks, same
        envelope recipients."""
        sent = []
        for rcpt, expected in DELIVERIES:
            r = self.relay.send(SENDER, [rcpt])
            self.assertEqual(r.rcpt[rcpt][0], 250, (rcpt, r))
            sent.append((rcpt, expected, r))
        u = self.relay.send(SENDER, [UNKNOWN_IN_REJECT_DOMAIN])
        self.assertEqual(u.rcpt[UNKNOWN_IN_REJECT_DOMAIN][0], 550, u)
        self.assertIn("5.1.1", u.rcpt[UNKNOWN_IN_REJECT_DOMAIN][1])
        self.relay.wait_queue_empty()
        for rcpt, expected, r in sent:
            with self.subTest(rcpt=rcpt):
                self.assertEqual(self.where(r), expected)

    def test_migrated_user_reaches_new_system_only(self):
        r = self.deliver(["ann@contoso.com"])
        self.assertTrue(r.queued, r)
        self.assertEqual(self.where(r), {"newsys": ["ann@o365.contoso.com"]})
        # decision logged at end of message, with Postfix's queue id
        self.milter.wait_log(rf"{r.queue_id}: to=<ann@contoso.com>, action=rewrite, "
                             rf"new=<ann@o365\.contoso\.com>")

    def test_explicit_target(self):
        r = self.deliver(["carol@contoso.com"])
        self.assertEqual(self.where(r), {"newsys": ["carol@contoso.onmicrosoft.com"]})

    def test_source_user_reaches_google_unchanged(self):
        r = self.deliver(["bob@contoso.com"])
        self.assertEqual(self.where(r), {"google": ["bob@contoso.com"]})
        # Passed on unchanged: no log line with log_lookups = no (the default). The line would
        # have been written before the end-of-message reply, so before Postfix's 250: its
        # absence now is final.
        self.assertNotIn(f"{r.queue_id}: to=<bob@contoso.com>", self.milter.log())

    def test_unknown_user_relayed_to_google_where_domain_relays(self):
        r = self.deliver(["zoe@contoso.com"])
        self.assertEqual(self.where(r), {"google": ["zoe@contoso.com"]})

    def test_unknown_user_refused_at_rcpt_where_domain_is_authoritative(self):
        r = self.relay.send(SENDER, ["ghost@northwind.com", "nina@northwind.com"])
        code, text = r.rcpt["ghost@northwind.com"]
        self.assertEqual(code, 550)
        self.assertRegex(text, r"^5\.1\.1 <ghost@northwind\.com>: Recipient address rejected: ")
        self.assertEqual(r.rcpt["nina@northwind.com"][0], 250)
        self.relay.wait_queue_empty()
        self.assertEqual(self.where(r), {"newsys": ["nina@o365.northwind.com"]})

    def test_recipient_no_parser_reads_refused_where_domain_is_authoritative(self):
        # Postfix bounds only the line (line_length_limit = 2048): a 1,100-byte local part reaches
        # the milter, which cannot parse it. It is an unknown user of the domain it names, not
        # "foreign": refused here, as the socketmap's recipients table refuses it.
        unreadable = "q" * 1100 + "@northwind.com"
        r = self.relay.send(SENDER, [unreadable, "nina@northwind.com"])
        self.assertEqual(r.rcpt[unreadable][0], 550, r.rcpt[unreadable])
        self.assertEqual(r.rcpt["nina@northwind.com"][0], 250)
        self.relay.wait_queue_empty()
        self.assertEqual(self.where(r), {"newsys": ["nina@o365.northwind.com"]})

    def test_recipient_routed_as_postfix_reads_it(self):
        # Postfix reads RCPT TO with its RFC 822 tokenizer (blanks and comments inside the
        # brackets go) and resolves it (the percent hack, on by default, for an address at this
        # relay's own IP literal), then delivers to what it read. The milter routes that reading
        # ({rcpt_addr}), not the text as written, which parses as no address or a foreign one.
        args = {"<ann@contoso.com >": 250, "< dave@contoso.com>": 250, "<carol(work)@contoso.com>": 250,
                "<ghost@northwind.com >": 550, "<nina%northwind.com@[127.0.0.1]>": 250}
        message_id = h.smtp_client.new_message_id()
        with self.relay.session() as s:
            self.assertEqual(s.smtp.mail(SENDER)[0], 250)
            replies = {arg: s.smtp.docmd("RCPT", "TO:" + arg) for arg in args}
            self.assertEqual(s.smtp.data(h.smtp_client.make_message(SENDER, ["list@contoso.com"], message_id))[0],
                             250)
        self.assertEqual({arg: code for arg, (code, _) in replies.items()}, args, replies)
        self.assertIn(b"Postfix reads it as <ghost@northwind.com>", replies["<ghost@northwind.com >"][1])
        self.relay.wait_queue_empty()
        self.assertEqual(self.lab.where(message_id),
                         {"newsys": sorted(["ann@o365.contoso.com", "dave@o365.contoso.com", "carol@contoso.onmicrosoft.com",
                                            "nina@o365.northwind.com"]),
                          "google": ["dave@contoso.com"]})

    def test_one_message_split_one_copy_each(self):
        r = self.deliver(["ann@contoso.com", "bob@contoso.com", "zed@fabrikam.example"])
        self.assertEqual(self.where(r), {"newsys": ["ann@o365.contoso.com"],
                                         "google": ["bob@contoso.com"],
                                         "internet": ["zed@fabrikam.example"]})
        self.assert_one_copy_per_sink(r)

    def test_extension_and_case(self):
        r = self.deliver(["Ann+News@CONTOSO.com"])
        self.assertEqual(self.where(r), {"newsys": ["ann+News@o365.contoso.com"]})
        msg = self.sinks["newsys"].messages(r.message_id)[0]
        # ORCPT names the address exactly as the sender wrote it (xtext: '+' is +2B)
        self.assertEqual(msg.rcpt_params("ann+News@o365.contoso.com")["ORCPT"],
                         "rfc822;Ann+2BNews@CONTOSO.com")

    def test_alias_and_alias_domain_reach_primary_routing_address(self):
        r = self.deliver(["annie@contoso.com"])
        self.assertEqual(self.where(r), {"newsys": ["ann@o365.contoso.com"]})
        r = self.deliver(["ann@contoso.net"])
        self.assertEqual(self.where(r), {"newsys": ["ann@o365.contoso.com"]})

    def test_same_user_twice_gives_one_copy(self):
        r = self.deliver(["ann@contoso.com", "Ann@Contoso.com", "annie@contoso.com"])
        self.assertEqual(self.where(r), {"newsys": ["ann@o365.contoso.com"]})

    def test_dual_gives_one_copy_on_each_side(self):
        r = self.deliver(["dave@contoso.com"])
        self.assertEqual(self.where(r), {"google": ["dave@contoso.com"],
                                         "newsys": ["dave@o365.contoso.com"]})
        self.assert_one_copy_per_sink(r)

    def test_delivery_log_and_original_recipient(self):
        """What the delivery log says about a rewritten recipient, as Postfix 3.7 really does it.

        The issue expected orig_to=<original> in the smtp(8) line. Postfix 3.7.11 does not write
        it for milter-added recipients: cleanup records an added recipient as its own Postfix
        original recipient (ORCP), and log lines print orig_to only when it differs from to=.
        What carries the original is the DSN ORCPT we pass with smfi_addrcpt_par (the next hop
        and any DSN see it), and our own decision line, keyed by the same queue id. If a later
        Postfix starts logging orig_to for these, the first assertion tells us."""
        r = self.deliver(["ann@contoso.com", "Ann+News@CONTOSO.com", "dave@contoso.com"])
        ds = self.relay.wait_deliveries(r.message_id, 4)
        by_to = {d.to: d for d in ds}
        self.assertEqual(sorted(by_to), ["ann+News@o365.contoso.com", "ann@o365.contoso.com",
                                         "dave@contoso.com", "dave@o365.contoso.com"])
        self.assertEqual({d.orig_to for d in ds}, {None})   # Postfix 3.7.11: see docstring
        self.assertEqual({d.status for d in ds}, {"sent"})
        msg = self.sinks["newsys"].messages(r.message_id)[0]
        self.assertEqual(msg.rcpt_params("ann@o365.contoso.com")["ORCPT"], "rfc822;ann@contoso.com")
        self.assertEqual(msg.rcpt_params("dave@o365.contoso.com")["ORCPT"], "rfc822;dave@contoso.com")
        qid = ds[0].queue_id
        self.milter.wait_log(rf"^\S+ {qid}: to=<ann@contoso\.com>, action=rewrite, "
                             rf"new=<ann@o365\.contoso\.com>$")
        self.milter.wait_log(rf"^\S+ {qid}: to=<Ann\+News@CONTOSO\.com>, action=rewrite, "
                             rf"new=<ann\+News@o365\.contoso\.com>$")

    def test_sender_notify_and_orcpt_are_kept(self):
        r = self.deliver([("ann@contoso.com", ["NOTIFY=SUCCESS,FAILURE",
                                               "ORCPT=rfc822;ann-orig@contoso.com"])])
        msg = self.sinks["newsys"].messages(r.message_id)[0]
        params = msg.rcpt_params("ann@o365.contoso.com")
        self.assertEqual(params["NOTIFY"], "SUCCESS,FAILURE")
        self.assertEqual(params["ORCPT"], "rfc822;ann-orig@contoso.com")

    def test_a_utf8_orcpt_reaches_the_next_hop_as_the_sender_gave_it(self):
        # RFC 6533: ORCPT=utf-8;... escapes non-ASCII as \x{HEX}. Handed on as it came, Postfix
        # 3.7's cleanup stored the escape as text, and the next hop got d\x{5C}x{E9}vy (helper 68).
        r = self.deliver([("ann@contoso.com", ["ORCPT=utf-8;d\\x{E9}vy@contoso.com"])])
        msg = self.sinks["newsys"].messages(r.message_id)[0]
        self.assertEqual(msg.rcpt_params("ann@o365.contoso.com")["ORCPT"], "utf-8;d\\x{E9}vy@contoso.com")

    # ---- trace header and loops -----------------------------------------------------------

    def test_one_trace_header_per_pass_only_for_managed_mail(self):
        r = self.deliver(["bob@contoso.com"])
        msg = self.sinks["google"].messages(r.message_id)[0]
        traces = msg.header_values("X-Coexist-Trace")
        self.assertEqual(len(traces), 1, traces)
        self.assertRegex(traces[0], rf"; id={r.queue_id}; \w{{3}}, \d\d \w{{3}} \d{{4}} ")
        r = self.deliver(["zed@fabrikam.example"])
        self.assertEqual(self.sinks["internet"].messages(r.message_id)[0].header_values("X-Coexist-Trace"), [])

    def test_loop_limit(self):
        trace = ("X-Coexist-Trace", "other.relay; id=1; Thu, 01 Jan 1970 00:00:00 +0000")
        r = self.relay.send(SENDER, ["ann@contoso.com"], extra_headers=[trace] * 3)
        self.assertEqual(r.data[0], 554, r)
        self.assertIn("5.4.6", r.data[1])
        r2 = self.deliver(["ann@contoso.com"], extra_headers=[trace] * 2)
        self.assertTrue(r2.queued, r2)
        self.assertEqual(self.where(r), {})
        msg = self.sinks["newsys"].messages(r2.message_id)[0]
        self.assertEqual(len(msg.header_values("X-Coexist-Trace")), 3)

    # ---- the map changes under a running milter -------------------------------------------

    def test_live_map_change_no_restart(self):
        pid = self.milter.pid
        r = self.deliver(["erin@contoso.com"])
        self.assertEqual(self.where(r), {"google": ["erin@contoso.com"]})
        coexist_map(self.ini, "set", "erin@contoso.com", "migrated")
        try:
            r = self.deliver(["erin@contoso.com"])
            self.assertEqual(self.where(r), {"newsys": ["erin@o365.contoso.com"]})
        finally:
            coexist_map(self.ini, "set", "erin@contoso.com", "source")
        r = self.deliver(["erin@contoso.com"])
        self.assertEqual(self.where(r), {"google": ["erin@contoso.com"]})
        self.assertEqual(self.milter.pid, pid)
        self.assertTrue(self.milter.alive())

    def test_scheduled_batch_flips_at_its_second_then_rolls_back(self):
        """A batch scheduled with --at: mail before the instant reaches Google, mail after it
        the new system, with no command run at the instant and the milter never told; `batch
        set NAME source` then rolls the whole batch back at once."""
        coexist_map(self.ini, "set", "gwen@contoso.com", "source", "--batch", "weekend")
        coexist_map(self.ini, "set", "hank@contoso.com", "source", "--batch", "weekend")
        try:
            at = int(time.time()) + 10
            at_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
            coexist_map(self.ini, "batch", "set", "weekend", "migrated", "--at", at_text)
            before = self.relay.send(SENDER, ["gwen@contoso.com", "hank@contoso.com"])
            self.assertLess(time.time(), at, "the message before the instant was sent after it: machine too slow")
            self.relay.wait_queue_empty()
            self.assertEqual(self.where(before), {"google": ["gwen@contoso.com", "hank@contoso.com"]})
            self.assertIn("pending: 2 users -> migrated at " + at_text, coexist_map(self.ini, "batch", "list"))
            time.sleep(max(0.0, at - time.time()) + 1.0)
            after = self.deliver(["gwen@contoso.com", "hank@contoso.com"])
            self.assertEqual(self.where(after), {"newsys": ["gwen@o365.contoso.com", "hank@o365.contoso.com"]})
            coexist_map(self.ini, "batch", "set", "weekend", "source")
            back = self.deliver(["gwen@contoso.com", "hank@contoso.com"])
            self.assertEqual(self.where(back), {"google": ["gwen@contoso.com", "hank@contoso.com"]})
            history = coexist_map(self.ini, "history", "gwen@contoso.com")
            self.assertIn(f"-> migrated, batch=weekend, by=", history)
            self.assertIn(f"scheduled change due {at_text}", history)
        finally:
            coexist_map(self.ini, "remove", "gwen@contoso.com")
            coexist_map(self.ini, "remove", "hank@contoso.com")

    def test_map_removed_defers_then_delivers_when_restored(self):
        moved = self.map_dir + ".gone"
        os.rename(self.map_dir, moved)
        # The milter looks at the map's files once a second (design 13.3), so the removal is
        # noticed within a second: wait that out, then every lookup must defer.
        time.sleep(1.2)
        try:
            r = self.relay.send(SENDER, ["ann@contoso.com", "bob@contoso.com", "zed@fabrikam.example"])
            for rcpt in ("ann@contoso.com", "bob@contoso.com"):
                code, text = r.rcpt[rcpt]
                self.assertEqual(code, 451, r)
                self.assertTrue(text.startswith("4.3.0 "), text)
            # the foreign recipient is not the map's business: accepted and delivered
            self.assertEqual(r.rcpt["zed@fabrikam.example"][0], 250)
            self.relay.wait_queue_empty()
            self.assertEqual(self.where(r), {"internet": ["zed@fabrikam.example"]})
            self.milter.wait_log(r"to=<ann@contoso\.com>, action=tempfail")
        finally:
            os.rename(moved, self.map_dir)
        # the sender retries later: now it goes where it should
        r = self.deliver(["ann@contoso.com", "bob@contoso.com"])
        self.assertEqual(self.where(r), {"newsys": ["ann@o365.contoso.com"],
                                         "google": ["bob@contoso.com"]})

    # ---- sessions ---------------------------------------------------------------------------

    def test_two_messages_in_one_session_do_not_share_state(self):
        with self.relay.session() as s:
            r1 = s.send(SENDER, ["ann@contoso.com"])
            r2 = s.send(SENDER, ["bob@contoso.com"])
            r3 = s.send(SENDER, ["ghost@northwind.com"])      # refused: RSET, no message
            r4 = s.send(SENDER, ["dave@contoso.com"])
        self.assertEqual(r3.rcpt["ghost@northwind.com"][0], 550)
        self.relay.wait_queue_empty()
        self.assertEqual(self.where(r1), {"newsys": ["ann@o365.contoso.com"]})
        self.assertEqual(self.where(r2), {"google": ["bob@contoso.com"]})
        self.assertEqual(self.where(r4), {"google": ["dave@contoso.com"],
                                          "newsys": ["dave@o365.contoso.com"]})
        msg = self.sinks["google"].messages(r2.message_id)[0]
        self.assertEqual(len(msg.header_values("X-Coexist-Trace")), 1)

    def test_outbound_message_let_go_at_data_and_the_next_one_routed(self):
        # A message with no managed recipient is accepted at DATA (the milter is done with
        # it; Postfix sends it no headers and no end of message, then ABORT). The session's
        # next messages must still be routed, and the outbound one delivered unchanged.
        trace = ("X-Coexist-Trace", "other.relay; id=1; Thu, 01 Jan 1970 00:00:00 +0000")
        with self.relay.session() as s:
            r1 = s.send(SENDER, ["zed@fabrikam.example"], extra_headers=[trace] * 3)
            r2 = s.send(SENDER, ["ann@contoso.com"])
            r3 = s.send(SENDER, ["yan@fabrikam.example", "bob@contoso.com"])
            r4 = s.send(SENDER, ["xia@fabrikam.example"])
            r5 = s.send(SENDER, ["ann@contoso.com"], extra_headers=[trace] * 3)  # a loop: refused
        self.assertEqual(r5.data[0], 554, r5)
        self.relay.wait_queue_empty()
        self.assertEqual(self.where(r1), {"internet": ["zed@fabrikam.example"]})
        self.assertEqual(self.where(r2), {"newsys": ["ann@o365.contoso.com"]})
        self.assertEqual(self.where(r3), {"internet": ["yan@fabrikam.example"], "google": ["bob@contoso.com"]})
        self.assertEqual(self.where(r4), {"internet": ["xia@fabrikam.example"]})
        self.assertEqual(self.where(r5), {})
        # The outbound messages pass as sent: their own trace headers, none added.
        self.assertEqual(len(self.sinks["internet"].messages(r1.message_id)[0].header_values("X-Coexist-Trace")), 3)
        self.assertEqual(self.sinks["internet"].messages(r4.message_id)[0].header_values("X-Coexist-Trace"), [])
        self.assertEqual(len(self.sinks["newsys"].messages(r2.message_id)[0].header_values("X-Coexist-Trace")), 1)
        self.assertEqual(len(self.sinks["google"].messages(r3.message_id)[0].header_values("X-Coexist-Trace")), 1)

    def test_startup_summary(self):
        self.assertRegex(self.milter.log(),
                         r"starting coexist-milter \S+: config=\S+coexist\.ini, map=\S+/map, "
                         rf"users={len(USERS)}, domains=contoso\.com->o365\.contoso\.com,contoso\.net "
                         r"northwind\.com->o365\.northwind\.com")


if __name__ == "__main__":
    h.require_environment()
    require_binaries()
    unittest.main(verbosity=2)
