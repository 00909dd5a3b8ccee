#!/usr/bin/env python3
"""Self-test of the private slapd (coexist_harness/slapd.py): a provider starts and serves the
generated directory, a consumer replicates an add, a SIGKILLed slapd restarts with its data, a
10k-entry offline bulk load works, TLS answers with the test CA, and a SIGKILLed test leaves no
slapd behind."""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coexist_harness as h  # noqa: E402
from coexist_harness import slapd as s  # noqa: E402

# A correctness bound, not a performance assertion (design 13.5): replication takes
# milliseconds here, but a loaded CI machine under ASan builds may stall for seconds.
CONVERGE = 60


class ProviderAndConsumer(unittest.TestCase):
    def test_provider_serves_the_generated_directory(self):
        with s.Slapd(provider=True) as ldap:
            ldap.load_bulk(s.directory_ldif(["ann", "bob", "cat"], migrated=["ann"], dual=["cat"],
                                            targets={"ann": "ann@o365.contoso.com"},
                                            aliases={"ann": ["anna@contoso.com", "a@contoso.com"]}))
            ldap.start()
            [(dn, ann)] = ldap.search_entries("ou=people," + s.SUFFIX, "(uid=ann)")
            self.assertEqual(dn, s.people_dn("ann"))
            self.assertEqual(ann["mail"], ["ann@contoso.com"])
            self.assertEqual(sorted(ann["mailLocalAddress"]), ["a@contoso.com", "anna@contoso.com"])
            self.assertEqual(ann["mailRoutingAddress"], ["ann@o365.contoso.com"])
            [(_, migrated)] = ldap.search_entries(s.group_dn("migrated"), scope="base")
            self.assertEqual(sorted(migrated["member"]), sorted([s.service_dn(), s.people_dn("ann")]))
            self.assertEqual(ldap.count("ou=people," + s.SUFFIX, "(objectClass=inetOrgPerson)"), 3)
            # The service account binds and reads people, but never a password.
            r = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", ldap.uri, "-D", ldap.service_dn,
                                "-w", ldap.service_password, "-b", s.SUFFIX, "(cn=coexist)",
                                "userPassword", "cn"], capture_output=True, text=True,
                               env=s.ldap_tool_env(), timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("cn: coexist", r.stdout)
            self.assertNotIn("userPassword", r.stdout)
            # The root DSE offers the sync and paging controls the follower asks for.
            dse = ldap.search("", "(objectClass=*)", ["supportedControl"], scope="base")
            self.assertIn("1.3.6.1.4.1.4203.1.9.1.1", dse)
            self.assertIn("1.2.840.113556.1.4.319", dse)

    def test_consumer_replicates_changes(self):
        with s.Slapd("provider", provider=True) as provider:
            provider.load_bulk(s.directory_ldif(["ann"]))
            provider.start()
            with s.Slapd("consumer", consumer_of=provider) as consumer:
                consumer.start()
                h.wait_until(lambda: consumer.count(filter="(uid=ann)") == 1, CONVERGE,
                             "the consumer's first refresh", on_timeout=consumer.log_tail)
                provider.ldapadd(f"dn: {s.people_dn('bob')}\nobjectClass: inetOrgPerson\n"
                                 f"uid: bob\ncn: bob\nsn: bob\nmail: bob@contoso.com\n")
                provider.ldapmodify(f"dn: {s.group_dn('migrated')}\nchangetype: modify\n"
                                    f"add: member\nmember: {s.people_dn('bob')}\n")
                h.wait_until(lambda: s.people_dn("bob") in consumer.search(
                    s.group_dn("migrated"), attrs=["member"], scope="base"), CONVERGE,
                    "the consumer to see bob and his group", on_timeout=consumer.log_tail)
                self.assertEqual(consumer.count(filter="(uid=bob)"), 1)
                provider.modrdn(s.people_dn("ann"), "uid=anna")
                provider.ldapdelete(s.people_dn("bob"))
                h.wait_until(lambda: consumer.count(filter="(|(uid=ann)(uid=anna)(uid=bob))") == 1
                             and consumer.count(filter="(uid=anna)") == 1, CONVERGE,
                             "rename and delete to replicate", on_timeout=consumer.log_tail)
                # The consumer serves RFC 4533 itself.
                self.assertIn("1.3.6.1.4.1.4203.1.9.1.1", consumer.search(
                    "", attrs=["supportedControl"], scope="base"))

    def test_kill_and_restart_keep_the_data(self):
        with s.Slapd(provider=True) as ldap:
            ldap.load_bulk(s.directory_ldif(["ann"]))
            ldap.start()
            port = ldap.port
            ldap.ldapadd(f"dn: {s.people_dn('bob')}\nobjectClass: inetOrgPerson\n"
                         f"uid: bob\ncn: bob\nsn: bob\nmail: bob@contoso.com\n")
            ldap.kill()
            self.assertFalse(h.ports.is_listening(h.LOOPBACK4, port))
            ldap.start()
            self.assertEqual(ldap.port, port)
            self.assertEqual(ldap.count(filter="(|(uid=ann)(uid=bob))"), 2)
            ldap.restart()
            self.assertEqual(ldap.count(filter="(|(uid=ann)(uid=bob))"), 2)

    def test_bulk_load_of_ten_thousand_users(self):
        with s.Slapd(provider=True) as ldap:
            ldif = os.path.join(ldap.directory, "10k.ldif")
            n = s.write_directory_ldif(ldif, 10_000, migrated=[s.user_uid(i) for i in range(1, 101)])
            self.assertEqual(n, 10_000)
            took = ldap.load_bulk(ldif)
            ldap.start()
            print(f"slapadd -q of 10k users: {took:.2f}s", file=sys.stderr)
            self.assertEqual(ldap.count("ou=people," + s.SUFFIX, "(objectClass=inetOrgPerson)"), 10_000)
            self.assertIn(s.people_dn(s.user_uid(10_000)), ldap.search(s.SUFFIX, "(uid=user0010000)", ["1.1"]))


class Tls(unittest.TestCase):
    def test_starttls_and_ldaps_with_the_test_ca(self):
        with tempfile.TemporaryDirectory() as tmp:
            ca = s.TestCA(os.path.join(tmp, "ca"))
            with s.Slapd(provider=True, tls=ca) as ldap:
                ldap.load_bulk(s.directory_ldif(["ann"]))
                ldap.start()
                env = s.tls_tool_env(ca.ca_cert)
                for uri, extra in ((ldap.uri, ["-ZZ"]), (ldap.ldaps_uri, [])):
                    r = subprocess.run(["ldapsearch", "-x", "-LLL", "-H", uri, *extra, "-b",
                                        s.SUFFIX, "(uid=ann)", "mail"], capture_output=True,
                                       text=True, env=env, timeout=30)
                    self.assertEqual(r.returncode, 0, f"{uri}: {r.stderr}")
                    self.assertIn("mail: ann@contoso.com", r.stdout)
                # Without the CA the certificate is refused.
                r = subprocess.run(["ldapsearch", "-x", "-H", ldap.ldaps_uri, "-b", "", "-s", "base"],
                                   capture_output=True, text=True, timeout=30,
                                   env=s.tls_tool_env(ca.client_cert))
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("Can't contact LDAP server", r.stderr)


CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from coexist_harness import slapd as s
with s.Slapd() as ldap:
    ldap.start()
    print(ldap.directory, ldap.process.pid, flush=True)
    time.sleep(120)
"""


class CleanupAfterKill(unittest.TestCase):
    def test_sigkill_leaves_no_slapd(self):
        child = subprocess.Popen([sys.executable, "-c", CHILD, os.path.dirname(
            os.path.abspath(__file__))], stdout=subprocess.PIPE, text=True)
        try:
            directory, pid = child.stdout.readline().split()
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            h.wait_until(lambda: not os.path.exists(directory), 30, "guardian cleanup")
            h.wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10, "slapd gone")
        finally:
            if child.poll() is None:
                child.kill()
            child.stdout.close()


if __name__ == "__main__":
    why = s.missing_requirements()
    if why:
        print(f"SKIP: {why}", file=sys.stderr)
        sys.exit(h.SKIP_CODE)
    started = time.monotonic()
    unittest.main(verbosity=2)
