#!/usr/bin/env python3
"""coexist-map commands gam|exo (design section 10): the scripts for a sample batch against
reviewed files (tests/tool/expected/), every argument read back by a real sh and by PowerShell's
quoting rules exactly as the map holds it (hostile local parts included), --state, and the
errors: unknown batch, empty selection, unknown system."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
MAP = os.environ.get("COEXIST_MAP", "")
SAMPLE = os.path.join(HERE, "scripts_sample.csv")
EXPECTED = os.path.join(HERE, "expected")
EPOCH = "1800000000"  # 2027-01-15T08:00:00Z: the header's "generated" time, fixed for comparing

CONFIG = """[map]
path = {map}

[domain contoso.com]
routing_domain = o365.contoso.com
{fabrikam}
[milter]
socket = inet:8891@127.0.0.1
user = nobody

[policyd]
policy_socket = inet:8892@127.0.0.1
socketmap_socket = inet:8893@127.0.0.1
user = nobody
"""
FABRIKAM = "\n[domain fabrikam.com]\nrouting_domain = fabrikam.onmicrosoft.com\n"

HOSTILE = "o'brien$home`id`|x&y@contoso.com"  # a dot-atom: ' $ ` | & are all atext (RFC 5322)
TYPOGRAPHIC = "o\u2019neil@contoso.com"        # U+2019 ends a PowerShell single-quoted string


def powershell_single_quoted(line):
    """The single-quoted string literals of one PowerShell line, as PowerShell's tokenizer reads
    them: ' and U+2018..U+201B all open and close one; two of them in a row stand for one."""
    quotes = "'\u2018\u2019\u201a\u201b"
    literals, i = [], 0
    while i < len(line):
        if line[i] not in quotes:
            i += 1
            continue
        i += 1
        text = ""
        while True:
            if i >= len(line):
                raise ValueError(f"unterminated string in {line!r}")
            if line[i] in quotes:
                if i + 1 < len(line) and line[i + 1] in quotes:
                    text += line[i + 1]
                    i += 2
                    continue
                i += 1
                break
            text += line[i]
            i += 1
        literals.append(text)
    return literals


class ScriptsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="coexist-scripts-")
        cls.ini = cls.write_ini("coexist.ini", FABRIKAM)
        cls.tool("init")
        r = cls.tool("import", SAMPLE)
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def write_ini(cls, name, fabrikam):
        path = os.path.join(cls.dir, name)
        with open(path, "w") as f:
            f.write(CONFIG.format(map=os.path.join(cls.dir, "map"), fabrikam=fabrikam))
        return path

    @classmethod
    def tool(cls, *args, ini=None):
        env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
        return subprocess.run([MAP, "-c", ini or cls.ini, *args], capture_output=True, text=True,
                              timeout=60, env=env)

    def script(self, system, *args):
        r = self.tool("commands", system, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_output_matches_the_reviewed_files(self):
        for system, name in (("gam", "wave1.gam.sh"), ("exo", "wave1.exo.ps1")):
            with self.subTest(system=system):
                with open(os.path.join(EXPECTED, name), encoding="utf-8") as f:
                    expected = f.read()
                self.assertEqual(self.script(system, "--batch", "wave1"), expected)

    def test_sh_reads_every_gam_argument_back_exactly(self):
        # A stand-in gam that records its argv, one NUL-separated record per call.
        bindir = os.path.join(self.dir, "bin")
        os.makedirs(bindir, exist_ok=True)
        record = os.path.join(self.dir, "gam-calls")
        fake = os.path.join(bindir, "gam")
        with open(fake, "w") as f:
            f.write('#!/bin/sh\nfor a in "$@"; do printf \'%s\\037\' "$a"; done >> "$GAM_RECORD"\n'
                    'printf \'\\036\' >> "$GAM_RECORD"\n')
        os.chmod(fake, 0o755)
        script = os.path.join(self.dir, "wave1.sh")
        with open(script, "w", encoding="utf-8") as f:
            # The batch's cut-over, then the undo of its users on source (asked for by name).
            f.write(self.script("gam", "--batch", "wave1"))
            f.write(self.script("gam", "--batch", "wave1", "--state", "source"))
        if os.path.exists(record):
            os.unlink(record)
        env = dict(os.environ, PATH=bindir + ":" + os.environ["PATH"], GAM_RECORD=record, HOME="/nonexistent")
        r = subprocess.run(["sh", script], capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(record, encoding="utf-8") as f:
            calls = [c.split("\x1f")[:-1] for c in f.read().split("\x1e")[:-1]]
        self.assertIn(["user", HOSTILE, "add", "forwardingaddress", "o'brien$home`id`|x&y@o365.contoso.com"], calls)
        self.assertIn(["user", HOSTILE, "forward", "on", "archive", "o'brien$home`id`|x&y@o365.contoso.com"], calls)
        self.assertIn(["user", TYPOGRAPHIC, "forward", "on", "archive", "o\u2019neil@o365.contoso.com"], calls)
        self.assertIn(["user", "bob@contoso.com", "forward", "on", "keep", "bob@o365.contoso.com"], calls)
        self.assertIn(["user", "carol@contoso.com", "forward", "off"], calls)
        self.assertIn(["user", "carol@contoso.com", "delete", "forwardingaddress", "carol@o365.contoso.com"], calls)
        # Quoted local parts never reach GAM (no Google address has one; GAM splits lists at commas).
        self.assertFalse([c for c in calls if any('"' in a or "," in a for a in c)], calls)
        self.assertEqual(len(calls), 16)  # 8 users scripted, two commands each

    def test_powershell_reads_every_exo_argument_back_exactly(self):
        both = self.script("exo", "--batch", "wave1") + self.script("exo", "--batch", "wave1", "--state", "source")
        lines = [l for l in both.splitlines() if l.startswith("Set-Mailbox")]
        parsed = [powershell_single_quoted(l) for l in lines]
        self.assertIn([HOSTILE, "smtp:o'brien$home`id`|x&y@o365.contoso.com"], parsed)
        self.assertIn([TYPOGRAPHIC, "smtp:o\u2019neil@o365.contoso.com"], parsed)
        self.assertIn(['"john doe"@contoso.com', 'smtp:"john doe"@o365.contoso.com'], parsed)
        self.assertIn(['"a,b"@contoso.com', 'smtp:"a,b"@o365.contoso.com'], parsed)
        self.assertEqual(len(lines), 9)  # dan's explicit target is left in place

    def test_users_on_source_only_by_name(self):
        # Their undo switches Gmail forwarding off: never part of a cut-over script by default.
        gam = self.script("gam", "--batch", "wave1")
        self.assertIn("state: migrated and dual; users: 7 (migrated 6, dual 1, source 0)", gam)
        self.assertNotIn("forward off", gam)
        self.assertNotIn("carol@contoso.com", gam)

    def test_state_selects_the_undo(self):
        gam = self.script("gam", "--batch", "wave1", "--state", "source")
        self.assertIn("state: source; users: 3 (migrated 0, dual 0, source 3)", gam)
        commands = [l for l in gam.splitlines() if l.startswith("gam ")]
        self.assertTrue(commands)
        self.assertTrue(all(" forward off" in l or " delete forwardingaddress " in l for l in commands), commands)
        exo = self.script("exo", "--state", "migrated")
        self.assertIn("batch: (all); state: migrated; users: 7", exo)  # erin of wave2 too
        self.assertIn("'erin@contoso.com'", exo)
        self.assertNotIn("Remove=", exo)

    def test_a_domain_no_longer_managed_is_skipped_and_said(self):
        ini = self.write_ini("no-fabrikam.ini", "")
        r = self.tool("commands", "gam", "--batch", "wave1", ini=ini)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("# kim@fabrikam.com: migrated: SKIPPED, its domain is no longer a managed domain", r.stdout)
        self.assertNotIn("gam user 'kim@fabrikam.com'", r.stdout)

    def test_errors(self):
        r = self.tool("commands", "gam", "--batch", "wave9")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown batch 'wave9'", r.stderr)
        self.assertEqual(r.stdout, "")
        r = self.tool("commands", "exo", "--batch", "wave2", "--state", "dual")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no user of batch 'wave2' is in state dual", r.stderr)
        r = self.tool("commands", "exo", "--state", "gone")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown state 'gone'", r.stderr)
        r = self.tool("commands", "zimbra")
        self.assertEqual(r.returncode, 1)
        r = self.tool("commands")
        self.assertEqual(r.returncode, 1)


if __name__ == "__main__":
    if not MAP or not os.access(MAP, os.X_OK):
        print("COEXIST_MAP not set: skipped")
        sys.exit(77)
    unittest.main(verbosity=2)
