#!/usr/bin/env python3
"""coexist-map check (design sections 12, 13.6): the map read as the daemons' user (a child
that drops to it), that user's existence, a bad configuration, and Postfix's smtputf8_enable,
allow_percent_hack and swap_bangpath read with postconf; and the daemons' own -n, which share
the implementation, on the same cases.
Runs as root (as CI does) to check as `nobody`; the permission cases are skipped otherwise."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

MAP = os.environ.get("COEXIST_MAP", "")
MILTER = os.environ.get("COEXIST_MILTER", "")
POLICYD = os.environ.get("COEXIST_POLICYD", "")
ROOT = os.geteuid() == 0

CONFIG = """[map]
path = {map}

[domain contoso.com]
routing_domain = o365.contoso.com

[milter]
socket = inet:8891@127.0.0.1
user = {milter_user}

[policyd]
policy_socket = inet:8892@127.0.0.1
socketmap_socket = inet:8893@127.0.0.1
user = {policyd_user}
"""


# contrib/postfix/README.md's base: the two rewrites off, the managed domains (and the aliases
# and second domains some tests add) relayed.
SITE_BASE = "allow_percent_hack = no\nswap_bangpath = no\nrelay_domains = contoso.com, contoso.net, fabrikam.com\n"


class CheckTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="coexist-check-")
        os.chmod(self.dir, 0o755)  # nobody must be able to walk to the map
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.map_dir = os.path.join(self.dir, "map")
        self.postfix = os.path.join(self.dir, "postfix")
        os.mkdir(self.postfix)
        # smtputf8_enable defaults to yes there; the rest as contrib/postfix has it.
        self.main_cf("compatibility_level = 3.6\n" + SITE_BASE)
        self.ini = self.write_ini()
        r = self.run_tool("init")
        self.assertEqual(r.returncode, 0, r.stderr)

    def write_ini(self, milter_user="nobody", policyd_user="nobody", name="coexist.ini", extra=""):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(CONFIG.format(map=self.map_dir, milter_user=milter_user, policyd_user=policyd_user) + extra)
        return path

    def edited_ini(self, name, old, new):
        """write_ini(name=name) with `old` replaced by `new` in it."""
        path = self.write_ini(name=name)
        with open(path) as f:
            text = f.read()
        self.assertIn(old, text)
        with open(path, "w") as f:
            f.write(text.replace(old, new))
        return path

    def main_cf(self, text):
        with open(os.path.join(self.postfix, "main.cf"), "w") as f:
            f.write(text)

    def run_tool(self, *args, ini=None, stdin=None):
        return subprocess.run([MAP, "-c", ini or self.ini, *args], capture_output=True, text=True, timeout=60,
                              input=stdin)

    def check(self, ini=None, postfix=None):
        return self.run_tool("check", "--postfix-config", postfix or self.postfix, ini=ini)

    def test_good_map_passes(self):
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"configuration {self.ini}: valid", r.stdout)
        who = "nobody" if ROOT else "the current user (not root)"
        self.assertIn(f"coexist-milter and coexist-policyd: user nobody exists, map {self.map_dir} readable as {who}",
                      r.stdout)
        self.assertIn(f"postfix {self.postfix}: smtputf8_enable = yes", r.stdout)
        self.assertIn(f"postfix {self.postfix}: allow_percent_hack = no", r.stdout)
        self.assertIn(f"postfix {self.postfix}: swap_bangpath = no", r.stdout)
        self.assertEqual(r.stderr, "")

    @unittest.skipUnless(ROOT, "needs root to read the map as nobody")
    def test_map_unreadable_as_the_daemons_user_fails(self):
        os.chown(self.map_dir, 0, 0)
        os.chmod(self.map_dir, 0o700)  # root reads it; nobody cannot
        r = self.check()
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn(f"map {self.map_dir} cannot be read as user 'nobody'", r.stderr)
        self.assertIn("Permission denied", r.stderr)
        # The same map is fine for root itself: it is the daemons' user that matters.
        self.assertEqual(self.run_tool("route", "ann@contoso.com").returncode, 0)

    @unittest.skipUnless(ROOT, "needs root to read the map as nobody")
    def test_init_hint_names_the_daemons_group_or_the_directory_above(self):
        # Walk-through: init's hint said "chgrp coexist" whatever the daemons' user; with
        # user = nobody that group is nogroup (nobody's primary group on Debian).
        import grp
        import pwd
        group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        shutil.rmtree(self.map_dir)
        os.mkdir(self.map_dir, 0o700)  # made by hand, root's: init keeps an existing directory as it is
        r = self.run_tool("init")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"(e.g. chgrp {group} {self.map_dir}; chmod 2750 {self.map_dir};", r.stderr)
        self.assertNotIn("chgrp coexist", r.stderr)
        # The map's group and mode are right, a directory above it is closed: no chgrp mends that.
        shutil.rmtree(self.map_dir)
        os.chmod(self.dir, 0o700)
        try:
            r = self.run_tool("init")
        finally:
            os.chmod(self.dir, 0o755)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"{self.map_dir} has their group {group} and mode 2750 already, so a directory above it does "
                      "not let them through", r.stderr)
        self.assertNotIn("chgrp", r.stderr)

    @unittest.skipUnless(ROOT, "needs root to read the map as nobody")
    def test_map_file_unreadable_as_the_daemons_user_is_named(self):
        # The directory is open to all, one file in it is not: the error names that file, not
        # the directory, whose mode is fine.
        os.chown(self.map_dir, 0, 0)
        os.chmod(self.map_dir, 0o755)
        for name in ("data.mdb", "lock.mdb"):
            os.chown(os.path.join(self.map_dir, name), 0, 0)
        os.chmod(os.path.join(self.map_dir, "lock.mdb"), 0o666)
        os.chmod(os.path.join(self.map_dir, "data.mdb"), 0o600)
        r = self.check()
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn(f"open {self.map_dir}/data.mdb: Permission denied", r.stderr)
        os.chmod(os.path.join(self.map_dir, "data.mdb"), 0o644)
        os.chmod(os.path.join(self.map_dir, "lock.mdb"), 0o600)
        r = self.check()
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn(f"open {self.map_dir}/lock.mdb: Permission denied", r.stderr)

    @unittest.skipUnless(ROOT, "needs root to read the configuration as nobody")
    def test_a_configuration_unreadable_as_the_daemons_user_fails_check_and_n(self):
        # Walk-through (helper 69): coexist.ini root:root 0600 passed check and -n, which read it
        # as root; the shipped units start the daemons as their user (User=), which then exited 2
        # at every start, and RestartPreventExitStatus kept them down: every message deferred.
        os.chmod(self.ini, 0o600)
        r = self.check()
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn(f"configuration {self.ini} cannot be read as user 'nobody': Permission denied", r.stderr)
        self.assertNotIn(f"map {self.map_dir} cannot be read", r.stderr)
        for daemon in [d for d in (MILTER, POLICYD) if d]:
            with self.subTest(daemon=os.path.basename(daemon)):
                n = subprocess.run([daemon, "-n", "-c", self.ini], capture_output=True, text=True, timeout=60)
                self.assertEqual(n.returncode, 3, n.stdout + n.stderr)
                self.assertIn(f"configuration {self.ini} cannot be read as user 'nobody'", n.stderr)
                # What -n foretells: started as that user, the daemon cannot start.
                started = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                          daemon, "-c", self.ini, "--stderr"],
                                         capture_output=True, text=True, timeout=60)
                self.assertEqual(started.returncode, 2, started.stdout + started.stderr)
        os.chmod(self.ini, 0o644)
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_route_reads_stdin_a_line_at_a_time_with_lines_bounded(self):
        # `route -`: one address a line, blanks and a CR trimmed, blank lines skipped; a line of
        # over 4096 bytes (in the middle, or last without a newline) is named and skipped, the
        # others still answered, and the exit status says some input was bad (2).
        stdin = ("ann@contoso.com\r\n\n  bob@example.org \n" + "x" * 5000 + "@contoso.com\n"
                 + "cy@contoso.com\n" + "y" * 4097)
        r = self.run_tool("route", "-", stdin=stdin)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertEqual([line.split()[0] for line in r.stdout.splitlines()],
                         ["ann@contoso.com", "bob@example.org", "cy@contoso.com"])
        self.assertEqual(r.stderr.count("coexist-map: route: a line of stdin is longer than 4096 bytes"), 2,
                         r.stderr)
        r = self.run_tool("route", "-", stdin="ann@contoso.com\n")
        self.assertEqual((r.returncode, len(r.stdout.splitlines())), (0, 1), r.stdout + r.stderr)

    def test_missing_map_fails_and_is_not_created(self):
        shutil.rmtree(self.map_dir)
        r = self.check()
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn(f"map {self.map_dir} cannot be read as", r.stderr)
        self.assertFalse(os.path.exists(self.map_dir))

    def test_missing_user_fails(self):
        ini = self.write_ini(policyd_user="no-such-user-c", name="missing.ini")
        r = self.check(ini)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("coexist-policyd: run-as user 'no-such-user-c' does not exist", r.stderr)
        # The milter's user is checked on its own and passes.
        self.assertIn("coexist-milter: user nobody exists", r.stdout)

    def test_a_socket_group_problem_is_named_for_the_daemon_that_listens_there(self):
        # One run-as user for both daemons, so the user and the map are checked once for both; a
        # unix socket's group is the problem of the daemon that listens on it alone.
        ini = self.edited_ini("group.ini", "socket = inet:8891@127.0.0.1",
                              f"socket = unix:{self.dir}/milter.sock\nsocket_group = no-such-group-c")
        r = self.check(ini)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn(f"coexist-map: coexist-milter: socket group 'no-such-group-c' for unix:{self.dir}/milter.sock "
                      "does not exist", r.stderr)
        self.assertNotIn("coexist-policyd: socket group", r.stderr)
        self.assertIn("coexist-milter and coexist-policyd: user nobody exists", r.stdout)
        if POLICYD:  # and the daemon that does not listen there agrees
            n = subprocess.run([POLICYD, "-n", "-c", ini], capture_output=True, text=True, timeout=60)
            self.assertEqual(n.returncode, 0, n.stdout + n.stderr)

    def test_a_wildcard_inet_socket_or_a_socket_postfix_cannot_open_is_a_warning(self):
        # Walk-through: "socket = inet:8891" (every address of the host, by libmilter's syntax)
        # and "socket_mode = 0000" passed check and -n without a word.
        ini = self.edited_ini("wild.ini", "socket = inet:8891@127.0.0.1", "socket = inet:8891")
        r = self.check(ini)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("coexist-map: warning: coexist-milter: socket inet:8891 has no @host: it listens on every "
                      "address of this host, and anyone who reaches port 8891 may ask who is migrated; write "
                      "inet:8891@127.0.0.1", r.stderr)
        self.assertEqual(r.stderr.count("warning"), 1, r.stderr)
        # "inet:PORT@" too: an empty host is every address as well.
        empty_host = self.edited_ini("empty-host.ini", "policy_socket = inet:8892@127.0.0.1", "policy_socket = inet:8892@")
        r = self.check(empty_host)
        self.assertIn("coexist-map: warning: coexist-policyd: socket inet:8892@ has no @host: it listens on every "
                      "address of this host, and anyone who reaches port 8892 may ask who is migrated; write "
                      "inet:8892@127.0.0.1", r.stderr)
        closed = self.edited_ini("closed.ini", "policy_socket = inet:8892@127.0.0.1",
                                 f"policy_socket = unix:{self.dir}/policy.sock\nsocket_mode = 0600")
        r = self.check(closed)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"coexist-map: warning: coexist-policyd: socket unix:{self.dir}/policy.sock has mode 0600: "
                      "connecting takes write permission", r.stderr)
        self.assertEqual(r.stderr.count("warning"), 1, r.stderr)
        # A unix socket in a directory that does not exist: the daemon would stop at start.
        nodir = self.edited_ini("nodir.ini", "policy_socket = inet:8892@127.0.0.1",
                                f"policy_socket = unix:{self.dir}/missing/policy.sock")
        r = self.check(nodir)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"coexist-map: warning: coexist-policyd: socket unix:{self.dir}/missing/policy.sock: directory "
                      f"{self.dir}/missing does not exist, and the daemon does not create it", r.stderr)
        self.assertEqual(r.stderr.count("warning"), 1, r.stderr)
        # The daemons' -n say the same and still pass.
        for daemon, config, text in ((MILTER, ini, "has no @host"), (POLICYD, closed, "has mode 0600"),
                                     (POLICYD, nodir, "does not exist")):
            if not daemon:
                continue
            n = subprocess.run([daemon, "-n", "-c", config], capture_output=True, text=True, timeout=60)
            self.assertEqual(n.returncode, 0, n.stdout + n.stderr)
            self.assertIn("warning: socket ", n.stderr)
            self.assertIn(text, n.stderr)
        # Explicit addresses and a mode Postfix can use: nothing said.
        self.assertEqual(self.check().stderr, "")

    def test_a_stored_target_that_is_no_host_name_is_a_warning(self):
        # A map written before targets had to be host names (its dump restores with a warning):
        # route still sends the user's mail there, and export | import would refuse the row.
        dump = os.path.join(self.dir, "old.jsonl")
        with open(dump, "w") as f:
            f.write('{"coexist_dump":1,"schema":2,"users":2,"aliases":0,"audit":0,"meta":0}\n'
                    '{"user":"ann@contoso.com","state":"migrated","target":"ann@-old-.example"}\n'
                    '{"user":"bob@contoso.com","state":"migrated","target":"bob@elsewhere.example"}\n')
        r = self.run_tool("restore", "--replace", dump)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("warning: target restored as it was, no host name mail can be sent to: ann@contoso.com -> "
                      "ann@-old-.example", r.stdout)
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("coexist-map: warning: ann@contoso.com has the target ann@-old-.example, no host name mail can "
                      "be sent to (the label '-old-' begins or ends with a hyphen)", r.stderr)
        self.assertNotIn("bob@", r.stderr)

    def test_bad_config_fails_naming_file_and_key(self):
        ini = self.write_ini(name="bad.ini", extra="loop_limt = 3\n")
        r = self.check(ini)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("bad.ini", r.stderr)
        self.assertIn("loop_limt", r.stderr)

    def test_smtputf8_off_is_a_warning(self):
        self.main_cf("compatibility_level = 3.6\nsmtputf8_enable = no\n" + SITE_BASE)
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"warning: postfix {self.postfix}: smtputf8_enable = no", r.stderr)
        # Postfix's own default for an old compatibility_level is off too: postconf resolves it.
        self.main_cf("compatibility_level = 0\n")
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("smtputf8_enable = no", r.stderr)

    def test_a_recipient_delimiter_other_than_coexists_is_a_warning(self):
        # Postfix cuts ann-news@ at "-", coexist (default "+") would look it up whole.
        self.main_cf("compatibility_level = 3.6\nrecipient_delimiter = -\n" + SITE_BASE)
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"warning: postfix {self.postfix}: recipient_delimiter = -, but coexist's [routing] "
                      "recipient_delimiter = +", r.stderr)
        self.assertIn("set [routing] recipient_delimiter = - in coexist.ini", r.stderr)
        # The same characters in another order agree; Postfix's empty default cuts nothing.
        self.main_cf("compatibility_level = 3.6\nrecipient_delimiter = -+\n" + SITE_BASE)
        ini = self.write_ini(name="both.ini", extra="[routing]\nrecipient_delimiter = +-\n")
        r = self.check(ini)
        self.assertEqual(r.stderr, "", r.stderr)
        self.assertIn(f"postfix {self.postfix}: recipient_delimiter = -+", r.stdout)
        self.main_cf("compatibility_level = 3.6\n" + SITE_BASE)
        r = self.check()
        self.assertEqual(r.stderr, "", r.stderr)

    def test_a_comment_after_a_main_cf_value_is_a_warning(self):
        # Walk-through: contrib/postfix/README.md's base block had "smtputf8_enable = yes  # ..."
        # lines; Postfix stops at start on such a boolean, and check called it fine.
        self.main_cf("compatibility_level = 3.6\nrelay_domains = contoso.com, contoso.net, fabrikam.com\n"
                     "swap_bangpath = no\nsmtputf8_enable = yes    # Postfix folds case as the map does\n"
                     "allow_percent_hack = no # see below\nrecipient_delimiter = + # the same as coexist's\n")
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for name in ("smtputf8_enable", "allow_percent_hack", "recipient_delimiter"):
            self.assertIn(f"coexist-map: warning: postfix {self.postfix}: {name} = ", r.stderr)
        self.assertEqual(r.stderr.count("the '#' and what follows it are part of the value"), 3, r.stderr)
        # Nothing else is judged of those values: no "set allow_percent_hack = no", no delimiter advice.
        self.assertNotIn("set allow_percent_hack = no", r.stderr)
        self.assertNotIn("in coexist.ini", r.stderr)
        self.assertNotIn("smtputf8_enable = yes\n", r.stdout)
        # A yes/no value with a '#' anywhere; a list whose comment Postfix reads as entries.
        self.main_cf("compatibility_level = 3.6\nrelay_domains = contoso.com, contoso.net, fabrikam.com\n"
                     "allow_percent_hack = no\nswap_bangpath = no#off\n"
                     "parent_domain_matches_subdomains = debug_peer_list # add relay_domains later\n")
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for name in ("swap_bangpath", "parent_domain_matches_subdomains"):
            self.assertIn(f"coexist-map: warning: postfix {self.postfix}: {name} = ", r.stderr)
        self.assertEqual(r.stderr.count("the '#' and what follows it are part of the value"), 2, r.stderr)
        self.assertNotIn("set swap_bangpath = no", r.stderr)

    def test_percent_hack_and_bang_path_on_are_warnings(self):
        # Postfix's defaults (yes) let user%contoso.com@localhost reach the old system unchanged.
        self.main_cf("compatibility_level = 3.6\n")
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"warning: postfix {self.postfix}: allow_percent_hack = yes", r.stderr)
        self.assertIn(f"warning: postfix {self.postfix}: swap_bangpath = yes", r.stderr)
        self.main_cf("compatibility_level = 3.6\nswap_bangpath = NO\n")  # Postfix takes any case
        r = self.check()
        self.assertIn("allow_percent_hack = yes", r.stderr)
        self.assertNotIn("swap_bangpath", r.stderr)

    def test_percent_hack_in_a_master_cf_override_is_a_warning(self):
        # main.cf says no, but trivial-rewrite, which applies them, is given its own values.
        master = os.path.join(self.postfix, "master.cf")
        with open(master, "w") as f:
            f.write("smtp inet n - n - - smtpd\n  -o swap_bangpath=yes\n"
                    "rewrite unix - - n - - trivial-rewrite\n  -o allow_percent_hack=yes\n"
                    "  -o { swap_bangpath = No }\n")
        r = self.check()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"postfix {self.postfix}: allow_percent_hack = no", r.stdout)
        self.assertIn(f"warning: postfix {self.postfix}: master.cf gives rewrite/unix -o allow_percent_hack=yes",
                      r.stderr)
        self.assertIn(f"warning: postfix {self.postfix}: master.cf gives smtp/inet -o swap_bangpath=yes", r.stderr)
        self.assertNotIn("rewrite/unix -o swap_bangpath", r.stderr)  # "No" is no
        self.assertEqual(r.stderr.count("warning"), 2, r.stderr)
        # Without the overrides: nothing to say.
        with open(master, "w") as f:
            f.write("smtp inet n - n - - smtpd\nrewrite unix - - n - - trivial-rewrite\n")
        r = self.check()
        self.assertEqual(r.stderr, "")
        self.assertNotIn("master.cf", r.stdout)

    def test_a_managed_domain_in_a_local_or_virtual_class_is_a_warning(self):
        # Walk-through: virtual_alias_domains = contoso.com made Postfix refuse every user the
        # socketmap does not rewrite (550 User unknown in virtual alias table: all of Google's
        # users), and check said nothing. contoso.com must be a relay domain only.
        ini = self.edited_ini("alias.ini", "routing_domain = o365.contoso.com\n",
                              "routing_domain = o365.contoso.com\naliases = contoso.net\n")
        for name, value in (("virtual_alias_domains", "example.org, Contoso.COM"),
                            ("mydestination", "localhost contoso.net"),
                            ("virtual_mailbox_domains", "contoso.com")):
            self.main_cf(f"compatibility_level = 3.6\n{name} = {value}\n" + SITE_BASE)
            r = self.check(ini)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            domain = "contoso.net" if name == "mydestination" else "contoso.com"
            self.assertIn(f"warning: postfix {self.postfix}: {name} lists {domain}, a domain coexist manages",
                          r.stderr)
            self.assertEqual(r.stderr.count("warning"), 1, r.stderr)
        # Other domains, and tables (which check does not open), say nothing.
        self.main_cf("compatibility_level = 3.6\nvirtual_alias_domains = example.org, hash:/nonexistent/vd\n"
                     "mydestination = localhost\n" + SITE_BASE)
        r = self.check(ini)
        self.assertEqual(r.stderr, "", r.stderr)

    def test_users_with_one_routing_address_are_a_warning(self):
        # Walk-through: two managed domains with routing_domain = the tenant's onmicrosoft.com
        # gave ann@contoso.com and ann@fabrikam.com one routing address, one mailbox on the new
        # system, and nothing said so.
        ini = self.write_ini(name="two.ini", extra="[domain fabrikam.com]\nrouting_domain = o365.contoso.com\n")
        for address, state in (("ann@contoso.com", "migrated"), ("ann@fabrikam.com", "source"),
                               ("bob@contoso.com", "migrated"), ("bob@fabrikam.com", "migrated")):
            r = self.run_tool("set", address, state, ini=ini)
            self.assertEqual(r.returncode, 0, r.stderr)
        r = self.check(ini)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("warning: [domain contoso.com], [domain fabrikam.com] have one routing_domain, "
                      "o365.contoso.com", r.stderr)
        self.assertIn("warning: ann@contoso.com, ann@fabrikam.com all have the routing address ann@o365.contoso.com",
                      r.stderr)
        self.assertIn("warning: bob@contoso.com, bob@fabrikam.com all have the routing address bob@o365.contoso.com",
                      r.stderr)
        # A target of its own ends it; two users given one target are the same mistake.
        self.assertEqual(self.run_tool("set", "ann@fabrikam.com", "source", "--target", "ann.f@o365.contoso.com",
                                       ini=ini).returncode, 0)
        self.assertEqual(self.run_tool("set", "bob@fabrikam.com", "migrated", "--target", "carl@elsewhere.example",
                                       ini=ini).returncode, 0)
        # The same address in another case is the same mailbox on the new system.
        self.assertEqual(self.run_tool("set", "carl@contoso.com", "migrated", "--target", "Carl@ElseWhere.example",
                                       ini=ini).returncode, 0)
        r = self.check(ini)
        self.assertNotIn("ann@o365.contoso.com", r.stderr)
        self.assertNotIn("bob@o365.contoso.com", r.stderr)
        self.assertIn("warning: bob@fabrikam.com, carl@contoso.com all have the routing address "
                      "carl@elsewhere.example", r.stderr)
        # One domain, distinct addresses: nothing said.
        r = self.check()
        self.assertEqual(r.stderr, "", r.stderr)

    def test_a_managed_domain_not_in_relay_domains_is_a_warning(self):
        # Walk-through: contoso.net (an alias domain) left out of relay_domains went out by
        # default_transport, and check said nothing.
        ini = self.edited_ini("alias.ini", "routing_domain = o365.contoso.com\n",
                              "routing_domain = o365.contoso.com\naliases = contoso.net, eu.contoso.org\n")
        base = "compatibility_level = 3.6\nallow_percent_hack = no\nswap_bangpath = no\n"
        self.main_cf(base + "relay_domains = Contoso.COM.\n")
        r = self.check(ini)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for missing in ("contoso.net", "eu.contoso.org"):
            self.assertIn(f"warning: postfix {self.postfix}: relay_domains does not list {missing}, a domain coexist "
                          "manages", r.stderr)
        self.assertEqual(r.stderr.count("warning"), 2, r.stderr)
        # A parent domain, or ".parent", covers a subdomain, as Postfix matches it by default.
        self.main_cf(base + "relay_domains = contoso.com contoso.net, .contoso.org\n")
        self.assertEqual(self.check(ini).stderr, "")
        self.main_cf(base + "relay_domains = contoso.com contoso.net, contoso.org\n")
        self.assertEqual(self.check(ini).stderr, "")
        # Unless relay_domains is left out of parent_domain_matches_subdomains: then only
        # ".parent" covers a subdomain (postconf(5)).
        self.main_cf(base + "relay_domains = contoso.com contoso.net, contoso.org\n"
                     "parent_domain_matches_subdomains = smtpd_access_maps\n")
        r = self.check(ini)
        self.assertIn("relay_domains does not list eu.contoso.org", r.stderr)
        self.assertEqual(r.stderr.count("warning"), 1, r.stderr)
        self.assertIn(f"postfix {self.postfix}: routing_domain o365.contoso.com is not a relay domain", r.stdout)
        self.main_cf(base + "relay_domains = contoso.com contoso.net, .contoso.org\n"
                     "parent_domain_matches_subdomains = smtpd_access_maps\n")
        self.assertEqual(self.check(ini).stderr, "")
        self.main_cf(base + "relay_domains = contoso.com contoso.net, contoso.org\n")
        # Where the routing addresses go is said: o365.contoso.com is a relay domain under
        # contoso.com; a misspelt one is not.
        self.assertIn(f"postfix {self.postfix}: routing_domain o365.contoso.com is a relay domain", self.check(ini).stdout)
        typo = self.edited_ini("typo.ini", "routing_domain = o365.contoso.com", "routing_domain = o365.contoso.co")
        r = self.check(typo)
        self.assertIn(f"postfix {self.postfix}: routing_domain o365.contoso.co is not a relay domain: mail to it goes "
                      "by default_transport to its MX (is it spelt right?)", r.stdout)
        # An exclusion before the parent takes the subdomain out, as Postfix's match_list does.
        self.main_cf(base + "relay_domains = contoso.com contoso.net, !eu.contoso.org, contoso.org\n")
        r = self.check(ini)
        self.assertIn("relay_domains does not list eu.contoso.org", r.stderr)
        self.assertEqual(r.stderr.count("warning"), 1, r.stderr)
        # A table is not opened: nothing said. Postfix's own default (empty) lists nothing.
        self.main_cf(base + "relay_domains = contoso.com, hash:/nonexistent/relay\n")
        self.assertEqual(self.check(ini).stderr, "")
        self.main_cf(base)
        self.assertIn("relay_domains does not list contoso.com", self.check(ini).stderr)

    def test_no_main_cf_is_said_and_skipped(self):
        empty = os.path.join(self.dir, "no-postfix")
        os.mkdir(empty)
        r = self.check(postfix=empty)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"postfix {empty}: not checked: {empty}/main.cf: No such file or directory", r.stdout)

    def test_daemons_n_agrees_with_check(self):
        # One implementation (daemon/preflight.cpp): the daemons' -n refuse what check refuses.
        ini = self.write_ini(milter_user="no-such-user-c", policyd_user="no-such-user-c", name="missing.ini")
        r = self.check(ini)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("run-as user 'no-such-user-c' does not exist", r.stderr)
        daemons = [d for d in (MILTER, POLICYD) if d]
        if not daemons:
            self.skipTest("no daemon built")
        for daemon in daemons:
            with self.subTest(daemon=os.path.basename(daemon)):
                n = subprocess.run([daemon, "-n", "-c", ini], capture_output=True, text=True, timeout=60)
                self.assertNotEqual(n.returncode, 0, n.stdout + n.stderr)
                self.assertIn("run-as user 'no-such-user-c' does not exist", n.stderr)
                good = subprocess.run([daemon, "-n", "-c", self.ini], capture_output=True, text=True, timeout=60)
                self.assertEqual(good.returncode, 0, good.stdout + good.stderr)


if __name__ == "__main__":
    if not MAP or not os.access(MAP, os.X_OK):
        print("COEXIST_MAP not set: skipped")
        sys.exit(77)
    unittest.main(verbosity=2)
