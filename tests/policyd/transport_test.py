"""Transport mode (design 11, issue 14) through a real Postfix 3.7.

contoso.com (+ its alias contoso.net) is `mode = transport` with `new_system_nexthop` = the
newsys sink; northwind.com stays in rewrite mode: the mode is a per-domain choice.

- TransportAgreementTest: `postmap -q KEY socketmap:...:transport` (Postfix's own client) agrees
  with `coexist-map route KEY` for every scenario key (bare domains and `*` included: NOTFOUND),
  and `:virtual` leaves transport-mode users alone.
- TransportRoutingTest: a relay with transport_maps = our table, then the harness's routes;
  virtual_alias_maps and relay_recipient_maps on our socketmap. Every flow of the scenario table
  lands where it does in rewrite mode, with the envelope recipient as sent at the new system
  (scenarios.TRANSPORT_DELIVERIES), no orig_to= in the relay's log for those users, and a DSN that
  names only the address the sender used. The order of transport_maps, measured: "*", parent
  domain and domain entries in a table in front of ours do not win; a full address there does.
- QueuedMessageFollowsRollbackTest: the new system is unreachable, a message for a migrated user
  waits in the relay's deferred queue, the user is rolled back (`coexist-map set USER source`):
  at the next retry the message goes to Google with its original recipient, because Postfix's
  queue manager resolves each recipient's transport again whenever the message enters the active
  queue (postfix/src/qmgr/qmgr_message.c, qmgr_message_realloc() and qmgr_message_alloc() call
  qmgr_message_resolve()).
  Its rewrite-mode twin shows what rewrite mode cannot do: the recipient was rewritten to
  ann@o365.contoso.com by cleanup when the message was accepted (it is in the queue file), so
  after the rollback the message still waits for the new system, and would be delivered there.

The private Postfix, its sinks and the SMTP client come from tests/harness (coexist_harness).
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "harness"))
from policyd_fixture import Policyd, free_port, run_map  # noqa: E402
from blackbox_test import KEYS  # noqa: E402
from postfix_test import postmap_query  # noqa: E402
from coexist_harness.scenarios import (DELIVERIES, TRANSPORT_DELIVERIES,  # noqa: E402
                                       UNKNOWN_IN_REJECT_DOMAIN, relay_routes,
                                       transport_domains_ini)

# The scenario keys, plus the second domain (rewrite mode beside transport mode).
AGREEMENT_KEYS = KEYS + ["nina@northwind.com", "Nina+x@northwind.com", "carol@contoso.com",
                         "northwind.com", "contoso.net"]

SENDER = "x@fabrikam.example"

# How long a test waits for mail to move (a correctness bound, not a performance assertion).
# qmgr's resolver client reuses its last answer for the same sender and address for 30 s
# (postfix/src/global/resolve_clnt.c, last_expire = time + 30), so a retry that soon after the
# previous lookup of that address may still take the old route; the bound covers that.
MAIL_TIMEOUT = 90


def harness():
    from coexist_harness import Lab, require_environment
    require_environment()
    return Lab


class TransportAgreementTest(unittest.TestCase):
    NEXTHOP = "smtp:[127.0.0.1]:2525"

    def setUp(self):
        self.daemon = Policyd(unknown_recipient="reject",
                              domains_ini=transport_domains_ini(self.NEXTHOP))
        self.addCleanup(self.daemon.close)
        self.daemon.start()

    def test_postmap_transport_agrees_with_coexist_map_route(self):
        from coexist_harness import tool_config_dir
        config_dir = tool_config_dir(self.daemon.dir)
        addresses = [k for k in AGREEMENT_KEYS if "@" in k]
        routes = run_map(self.daemon.config, "route", *addresses).stdout.splitlines()
        self.assertEqual(len(routes), len(addresses), routes)
        spec = self.daemon.socketmap_spec()
        for key, line in zip(addresses, routes):
            with self.subTest(key=key, route=line):
                fields = line.split()
                self.assertEqual(fields[0], key)
                action = fields[1]
                status, value = postmap_query(config_dir, key, f"socketmap:{spec}:transport")
                if action == "transport":
                    self.assertEqual(fields[2], self.NEXTHOP)
                    self.assertEqual((status, value), (0, self.NEXTHOP))
                else:
                    self.assertEqual((status, value), (1, ""))
                status, value = postmap_query(config_dir, key, f"socketmap:{spec}:virtual")
                if action == "rewrite":
                    self.assertEqual((status, value), (0, fields[2]))
                elif action == "dual":
                    self.assertEqual((status, value), (0, f"{key},{fields[2]}"))
                else:  # transport-mode users keep their address: no virtual alias
                    self.assertEqual((status, value), (1, ""))
                status, value = postmap_query(config_dir, key, f"socketmap:{spec}:recipients")
                if action != "reject":
                    self.assertEqual((status, value), (0, action))
                else:
                    self.assertEqual((status, value), (1, ""))
        # Bare domains, parent domains and "*" are what trivial-rewrite asks besides the
        # address (transport(5), TABLE SEARCH ORDER): never an answer of ours, in any table.
        # (coexist-map route refuses them: they are not addresses.)
        for key in [k for k in AGREEMENT_KEYS if "@" not in k] + [".contoso.com", ".northwind.com"]:
            for table in ("transport", "virtual", "recipients"):
                with self.subTest(key=key, table=table):
                    self.assertEqual(postmap_query(config_dir, key, f"socketmap:{spec}:{table}"), (1, ""))
        by_key = {line.split()[0]: line.split()[1] for line in routes}
        # Not vacuous, and per domain: contoso migrated users route, northwind's still rewrite.
        self.assertEqual(by_key["ann@contoso.com"], "transport")
        self.assertEqual(by_key["Ann+News@contoso.net"], "transport")
        self.assertEqual(by_key["carol@contoso.com"], "rewrite")  # an explicit target: only a rewrite reaches it
        self.assertEqual(by_key["dan@contoso.com"], "dual")
        self.assertEqual(by_key["bob@contoso.com"], "relay")
        self.assertEqual(by_key["nina@northwind.com"], "rewrite")
        self.assertEqual(by_key["x@contoso.com"], "reject")


class TransportLabTestCase(unittest.TestCase):
    """A lab with the google, newsys and internet sinks, then the daemon (whose config needs the
    newsys sink's next hop), then the relay."""

    def start_lab(self, contoso_mode="transport", newsys_reachable=True, main_cf=None,
                  tables_in_front=None):
        """tables_in_front(sinks): transport tables to put before ours (a test of the order)."""
        Lab = harness()
        self.lab = Lab("transport").__enter__()
        self.addCleanup(self.lab.__exit__, None, None, None)
        self.sinks = {name: self.lab.add_sink(name) for name in ("google", "newsys", "internet")}
        # "Unreachable": a loopback port nothing listens on (connection refused, mail deferred).
        newsys_hop = (self.sinks["newsys"].next_hop if newsys_reachable
                      else f"smtp:[127.0.0.1]:{free_port()}")
        self.newsys_hop = newsys_hop
        self.daemon = Policyd(unknown_recipient="reject",
                              domains_ini=transport_domains_ini(newsys_hop, contoso_mode))
        self.addCleanup(self.daemon.close)
        self.daemon.start()
        self.lab._tell("pid", self.daemon.process.pid)  # killed even if the test is SIGKILLed
        routes = relay_routes(self.sinks)
        if not newsys_reachable:  # in rewrite mode the new system is the routing domain's hop
            routes["o365.contoso.com"] = newsys_hop
        from coexist_harness import routes_table
        spec = self.daemon.socketmap_spec()
        params = {
            # Our table first, then the harness's own routes (contoso.com -> google, ...).
            # trivial-rewrite asks each key of the search order (full address, address without
            # extension, domain, parent domains, then "*") of every table in turn, and takes the
            # first table that answers the key (transport(5), TABLE SEARCH ORDER;
            # postfix/src/global/mail_addr_find.c and maps.c): a domain entry of the table
            # behind never beats our address entry. What the order decides is a table in front
            # that answers the full address too: a per-user table, static:, or regexp:/pcre:
            # (asked with the full address only). Such a table before ours would win.
            "transport_maps": ", ".join(
                ([tables_in_front(self.sinks)] if tables_in_front else [])
                + [f"socketmap:{spec}:transport", routes_table(routes)]),
            "virtual_alias_maps": f"socketmap:{spec}:virtual",
            "virtual_alias_domains": "",
            "relay_recipient_maps": f"socketmap:{spec}:recipients",
        }
        params.update(main_cf or {})
        self.relay = self.lab.add_postfix("relay", routes=routes, default_sink=self.sinks["internet"],
                                          main_cf=params)
        return self.relay

    def send(self, rcpt, esmtp=()):
        r = self.relay.send(SENDER, [(rcpt, list(esmtp))])
        self.assertEqual(r.rcpt[rcpt][0], 250, (rcpt, r))
        self.assertTrue(r.queued, r)
        return r


class TransportRoutingTest(TransportLabTestCase):
    def test_scenarios_land_as_in_rewrite_mode_with_the_recipient_unchanged(self):
        relay = self.start_lab()
        results = [(rcpt, expected, self.send(rcpt)) for rcpt, expected in TRANSPORT_DELIVERIES]
        for unknown in ("x@contoso.com", UNKNOWN_IN_REJECT_DOMAIN):
            u = relay.send(SENDER, [unknown])
            self.assertEqual(u.rcpt[unknown][0], 550, u)
        relay.wait_queue_empty(MAIL_TIMEOUT)
        rewrite_mode = dict(DELIVERIES)
        newsys_relay = f"[127.0.0.1]:{self.sinks['newsys'].port}"
        for rcpt, expected, r in results:
            with self.subTest(rcpt=rcpt):
                got = self.lab.where(r.message_id)
                self.assertEqual(got, expected)
                # The same sinks as in rewrite mode: only the recipient differs.
                self.assertEqual(set(got), set(rewrite_mode[rcpt]))
                deliveries = relay.deliveries(r.message_id)
                self.assertTrue(deliveries and all(d.status == "sent" for d in deliveries), deliveries)
                if expected == {"newsys": [rcpt]}:
                    # The relay's log: delivered to the new system as sent, no orig_to= rewrite.
                    self.assertEqual([(d.to, d.orig_to) for d in deliveries], [(rcpt, None)])
                    self.assertIn(newsys_relay, deliveries[0].relay)
        # The control: northwind.com is in rewrite mode, and its log says so.
        nina = dict((rcpt, r) for rcpt, _, r in results)["nina@northwind.com"]
        self.assertEqual([(d.to, d.orig_to) for d in relay.deliveries(nina.message_id)],
                         [("nina@o365.northwind.com", "nina@northwind.com")])
        # And the daemon logged each transport decision once, with its next hop.
        self.assertIn(f"action=transport", self.daemon.log())

    def test_wildcard_and_domain_entries_in_front_do_not_win(self):
        # What contrib/postfix/main.cf.transport says about the order, measured: trivial-rewrite
        # asks every table for the full address before any table for the domain, a parent
        # domain or "*". A table in front with only such entries does not take the migrated
        # user (and bob, whom ours does not know, gets the front table's domain entry).
        def in_front(sinks):
            internet, google = sinks["internet"].next_hop, sinks["google"].next_hop
            return f"inline:{{ *={internet}, .contoso.com={internet}, contoso.com={google} }}"
        relay = self.start_lab(tables_in_front=in_front)
        self.assertIn("inline:{ *=", relay.main_cf()["transport_maps"])
        ann, bob = self.send("ann@contoso.com"), self.send("bob@contoso.com")
        relay.wait_queue_empty(MAIL_TIMEOUT)
        self.assertEqual(self.lab.where(ann.message_id), {"newsys": ["ann@contoso.com"]})
        self.assertEqual(self.lab.where(bob.message_id), {"google": ["bob@contoso.com"]})

    def test_an_address_entry_in_front_wins(self):
        # Why ours goes first: a table in front that knows the full address (a per-user list,
        # static:, regexp:/pcre:) answers before ours is asked.
        relay = self.start_lab(tables_in_front=lambda sinks:
                               f"inline:{{ ann@contoso.com={sinks['internet'].next_hop} }}")
        ann = self.send("ann@contoso.com")
        relay.wait_queue_empty(MAIL_TIMEOUT)
        self.assertEqual(self.lab.where(ann.message_id), {"internet": ["ann@contoso.com"]})

    def test_dsn_names_only_the_address_the_sender_used(self):
        # The sinks announce DSN, and then the relay hands NOTIFY on instead of reporting. Told
        # the next hop has no DSN, the relay itself sends the "relayed" success notice (RFC 3461
        # section 4.2), to the sender's domain: the internet sink.
        self.start_lab(main_cf={"smtp_discard_ehlo_keywords": "dsn"})
        rcpt = "Ann+news@contoso.com"
        r = self.send(rcpt, ["NOTIFY=SUCCESS"])
        self.relay.wait_queue_empty(MAIL_TIMEOUT)
        self.assertEqual(self.lab.where(r.message_id), {"newsys": [rcpt]})
        reports = [m for m in self.sinks["internet"].messages()
                   if m.mail_from == "" and SENDER in m.recipients]
        self.assertEqual(len(reports), 1, self.sinks["internet"].messages())
        with open(reports[0].path, encoding="utf-8", errors="replace") as f:
            dsn = f.read()
        self.assertIn(f"Final-Recipient: rfc822; {rcpt}", dsn)
        self.assertIn("Action: relayed", dsn)
        self.assertNotIn("o365", dsn.lower())
        self.assertNotIn("orig_to=", "\n".join(d.line for d in self.relay.deliveries(r.message_id)))


class QueuedMessageFollowsRollbackTest(TransportLabTestCase):
    """A message waiting in the queue for the new system when its user is rolled back."""

    USER = "ann@contoso.com"

    def defer_for_the_new_system(self, contoso_mode):
        relay = self.start_lab(contoso_mode=contoso_mode, newsys_reachable=False)
        r = self.send(self.USER)
        deferred = relay.wait_deliveries(r.message_id, 1, status="deferred", timeout=MAIL_TIMEOUT)
        self.assertIn(self.newsys_hop.split(":", 1)[1], deferred[0].relay + deferred[0].text + deferred[0].line)
        self.assertTrue(relay.queue_files())
        self.assertEqual(self.lab.where(r.message_id), {})
        return r, deferred[0]

    def roll_back_and_retry(self):
        run_map(self.daemon.config, "set", self.USER, "source")
        self.assertEqual(run_map(self.daemon.config, "route", self.USER).stdout.split()[1], "relay")
        # Another address through the queue manager, so its resolver client's one-entry cache
        # (resolve_clnt.c) no longer holds the migrated user's old route; then retry the queue.
        other = self.send("bob@contoso.com")
        self.relay.wait_deliveries(other.message_id, 1, timeout=MAIL_TIMEOUT)
        self.relay.flush()  # postqueue -c DIR -f

    def test_transport_mode_delivers_to_google_with_the_original_recipient(self):
        r, deferred = self.defer_for_the_new_system("transport")
        self.assertEqual((deferred.to, deferred.orig_to), (self.USER, None))
        self.roll_back_and_retry()
        sent = self.relay.wait_deliveries(r.message_id, 1, status="sent", timeout=MAIL_TIMEOUT)
        self.assertEqual((sent[0].to, sent[0].orig_to), (self.USER, None))
        self.assertIn(f"[127.0.0.1]:{self.sinks['google'].port}", sent[0].relay)
        self.relay.wait_queue_empty(MAIL_TIMEOUT)
        self.assertEqual(self.lab.where(r.message_id), {"google": [self.USER]})

    def test_rewrite_mode_cannot_follow_the_rollback(self):
        """The twin in rewrite mode: cleanup wrote ann@o365.contoso.com into the queue file when
        the message was accepted, so the rollback does not reach it. It stays deferred for the
        new system (and would be delivered there once it answers, where the user no longer
        reads mail). Documented in coexist.ini(5), mode, and contrib/postfix/README.md."""
        r, deferred = self.defer_for_the_new_system("rewrite")
        routing = "ann@o365.contoso.com"
        self.assertEqual((deferred.to, deferred.orig_to), (routing, self.USER))
        before = len([d for d in self.relay.deliveries(r.message_id) if d.status == "deferred"])
        self.roll_back_and_retry()
        after = self.relay.wait_deliveries(r.message_id, before + 1, status="deferred",
                                           timeout=MAIL_TIMEOUT)
        self.assertTrue(all((d.to, d.orig_to) == (routing, self.USER) for d in after), after)
        self.assertFalse([d for d in self.relay.deliveries(r.message_id) if d.status == "sent"])
        self.assertTrue(self.relay.queue_files())
        self.assertEqual(self.lab.where(r.message_id), {})


if __name__ == "__main__":
    unittest.main(verbosity=2)
