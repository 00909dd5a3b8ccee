"""coexist test harness: real Postfix on loopback, SMTP sinks, daemons under test.

Python 3 stdlib only. Needs root (Postfix's master and smtp-sink's privilege drop), the postfix
package (postfix, postconf, postqueue, smtp-sink). Import it with:

    sys.path.insert(0, "<source>/tests/harness")
    from coexist_harness import Lab

A typical test:

    with Lab("milter") as lab:                        # temp dir, cleanup guardian, signal traps
        google = lab.add_sink("google")               # smtp-sink -d on 127.0.0.1:<free port>
        newsys = lab.add_sink("newsys")
        internet = lab.add_sink("internet")
        port = lab.free_port()
        milter = lab.spawn("milter", [binary, "-c", ini, "--stderr"])   # output: milter.log()
        relay = lab.add_postfix(                      # private instance, started
            "relay",
            routes={"contoso.com": google, "o365.contoso.com": newsys},   # = relay_domains too
            default_sink=internet,                    # default/relay transport (bounces too)
            main_cf={"smtpd_milters": f"inet:127.0.0.1:{port}"})
        r = relay.send("x@fabrikam.example", ["ann@contoso.com", ("bob@contoso.com", ["NOTIFY=NEVER"])])
        r.rcpt["ann@contoso.com"]   # (250, '2.1.5 Ok');  r.data -> (250, '2.0.0 Ok: queued as ...')
        relay.wait_queue_empty()    # sinks are complete only now
        lab.where(r.message_id)     # {'newsys': ['ann@o365.contoso.com'], 'google': ['bob@contoso.com']}
        newsys.messages(r.message_id)[0].rcpt_params("ann@o365.contoso.com")["ORCPT"]
        relay.wait_deliveries(r.message_id, 2)        # [Delivery(to=, orig_to=, relay=, status=)]

Pieces:
- Lab (lab.py): add_sink(name), add_postfix(name, routes, default_sink, main_cf,
  master_cf_extra, ipv6_smtpd), spawn(name, argv), free_port(host), path(...), where(message_id),
  wait_all_queues_empty(), diagnostics(). On exit stops daemons, Postfix, sinks and removes the
  directory (COEXIST_KEEP_LAB=1 keeps it); on an exception prints maillog and daemon output
  tails. SIGTERM/SIGINT unwind the with-block; a guardian process (guardian.py) does the same
  cleanup if the test is SIGKILLed (ctest timeout).
- PostfixInstance (postfix.py): send(), session() (several messages in one SMTP session,
  ipv6=True for [::1]), set_main_cf({...}) (+ reload), flush(), queue_files(),
  wait_queue_empty(), log(), wait_log(regex), queue_ids(message_id), deliveries(message_id),
  wait_deliveries(message_id, count, status).
- SmtpSink (sink.py): messages(message_id), recipients(message_id), clear(); SinkMessage has
  mail_from, recipients, rcpt_args, rcpt_params(addr), header_values(name), body.
- SmtpSession / SendResult (smtp_client.py): per-recipient reply codes, no hidden exceptions.
- routes_table(routes): the inline: transport table the harness builds from `routes`, for a
  test that puts its own transport_maps in front of it.
- tool_config_dir(directory), postmap(config_dir, *args): Postfix's command-line tools with a
  main.cf of the test's own (-c), never the machine's /etc/postfix (absent on a fresh Debian).
- Slapd (slapd.py): a private OpenLDAP slapd (provider, consumer_of=, tls=TestCA(...)) with
  ldapadd/ldapmodify/ldapdelete/modrdn/search, load_bulk (offline slapadd), kill/restart; and
  directory_ldif / write_directory_ldif, the generated contoso directory (people, the migrated
  and cutover groups, the service account). Its own requirements: slapd.missing_requirements().
- ports.py: free_port, wait_until (every wait has a timeout), wait_listening.

A test that cannot run here (not root, no Postfix) should exit with SKIP_CODE (77) via
require_environment(); register it in ctest with SKIP_RETURN_CODE 77.
"""

import os
import shutil

from .lab import Lab, Process
from .ports import LOOPBACK4, LOOPBACK6, free_port, wait_listening, wait_until
from .postfix import Delivery, PostfixInstance, postmap, routes_table, tool_config_dir
from .sink import SinkMessage, SmtpSink
from .slapd import Slapd, TestCA, directory_ldif, write_directory_ldif
from .smtp_client import SendResult, SmtpSession

SKIP_CODE = 77


def missing_requirements():
    """Why the harness cannot run here (str), or None."""
    if os.geteuid() != 0:
        return "needs root to run a private Postfix instance"
    for tool in ("postfix", "postconf", "postqueue", "smtp-sink"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} not installed"
    return None


def require_environment():
    """Exits the test program with SKIP_CODE when the harness cannot run here."""
    import sys
    why = missing_requirements()
    if why:
        print(f"SKIP: {why}", file=sys.stderr)
        sys.exit(SKIP_CODE)


__all__ = ["Lab", "Process", "PostfixInstance", "Delivery", "SmtpSink", "SinkMessage",
           "SmtpSession", "SendResult", "Slapd", "TestCA", "directory_ldif", "write_directory_ldif", "postmap", "routes_table", "tool_config_dir", "free_port", "wait_until", "wait_listening",
           "LOOPBACK4", "LOOPBACK6", "SKIP_CODE", "missing_requirements", "require_environment"]
