"""coexist-map's machine-readable outputs read by other programs' parsers (issue 12).

Drives the real coexist-map binary (COEXIST_MAP): builds a map with its commands, then checks
that `stats --json` is one JSON document with the right counts, that `history --format csv`
is read back by Python's csv module field for field, and that `dump` is JSON Lines that
`restore -` (standard input) turns into a map with the same digest and history.
"""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

MAP_TOOL = os.environ.get("COEXIST_MAP", "")

INI = """\
[map]
path = {map}

[routing]
recipient_delimiter = +
unknown_recipient = relay

[domain contoso.com]
routing_domain = o365.contoso.com
aliases = contoso.net

[domain fabrikam.com]
routing_domain = fabrikam.onmicrosoft.com
"""

USERS = """\
address,state,batch,target
ann@contoso.com,migrated,wave1,
bob@contoso.com,dual,wave1,
carl@contoso.com,source,"wave 2, late",
dora@fabrikam.com,migrated,"wave 2, late",dora@fabrikam.onmicrosoft.example
erin@fabrikam.com,source,,
"""


class MapToolOutputs(unittest.TestCase):
    def setUp(self):
        if not MAP_TOOL or not os.access(MAP_TOOL, os.X_OK):
            self.skipTest("COEXIST_MAP not set")
        self.dir = tempfile.mkdtemp(prefix="coexist-history-")
        self.ini = self.config("map")
        self.run_map(self.ini, "init")
        users = os.path.join(self.dir, "users.csv")
        with open(users, "w") as f:
            f.write(USERS)
        self.run_map(self.ini, "import", users)
        self.run_map(self.ini, "alias", "anna@contoso.com", "ann@contoso.com")
        self.run_map(self.ini, "alias", "a.lee@contoso.com", "ann@contoso.com")
        self.run_map(self.ini, "set", "bob@contoso.com", "migrated")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def config(self, name):
        path = os.path.join(self.dir, name + ".ini")
        with open(path, "w") as f:
            f.write(INI.format(map=os.path.join(self.dir, name)))
        return path

    def run_map(self, ini, *args, stdin=None, check=True):
        r = subprocess.run([MAP_TOOL, "-c", ini, *args], input=stdin, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            self.fail(f"coexist-map {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def test_stats_json(self):
        stats = json.loads(self.run_map(self.ini, "stats", "--json").stdout)
        self.assertEqual(stats["users"], {"total": 5, "source": 2, "migrated": 3, "dual": 0, "pending": 0})
        self.assertEqual(stats["batches"]["wave1"], {"total": 2, "source": 0, "migrated": 2, "dual": 0, "pending": 0})
        self.assertEqual(stats["batches"]["wave 2, late"]["source"], 1)
        self.assertEqual(stats["batches"]["wave 2, late"]["migrated"], 1)
        self.assertEqual(stats["unbatched"]["total"], 1)
        self.assertEqual(stats["domains"]["contoso.com"]["total"], 3)
        self.assertEqual(stats["domains"]["fabrikam.com"], {"total": 2, "source": 1, "migrated": 1, "dual": 0,
                                                            "pending": 0})
        self.assertEqual(stats["aliases"], 2)
        self.assertEqual(stats["overrides"], 0)
        self.assertEqual(stats["owners"], {"admin": 5, "directory": 0})
        self.assertEqual(stats["pending"], {"total": 0, "due": 0, "next_at": None})
        self.assertIsNone(stats["directory"])
        self.assertEqual(stats["schema"], 2)
        self.assertGreater(stats["map_used_bytes"], 0)
        self.assertGreaterEqual(stats["map_size_bytes"], stats["map_used_bytes"])

    def test_history_csv(self):
        out = self.run_map(self.ini, "history", "--format", "csv", "--batch", "wave 2, late").stdout
        rows = list(csv.reader(io.StringIO(out)))
        self.assertEqual(rows[0], ["time", "address", "old", "new", "batch", "by", "command"])
        self.assertEqual([r[1] for r in rows[1:]], ["carl@contoso.com", "dora@fabrikam.com"])
        self.assertEqual(rows[2][3], "migrated target=dora@fabrikam.onmicrosoft.example")
        self.assertEqual(rows[2][4], "wave 2, late")
        self.assertTrue(rows[2][6].startswith("import "), rows[2])
        # Every entry, oldest first: the import, the aliases, bob's change last.
        rows = list(csv.DictReader(io.StringIO(self.run_map(self.ini, "history", "--format", "csv").stdout)))
        self.assertEqual(len(rows), 8)
        self.assertEqual((rows[-1]["address"], rows[-1]["old"], rows[-1]["new"]),
                         ("bob@contoso.com", "dual", "migrated"))
        # --since in the future: the header alone.
        out = self.run_map(self.ini, "history", "--format", "csv", "--since", "2100-01-01T00:00:00+02:00").stdout
        self.assertEqual(out, "time,address,old,new,batch,by,command\n")

    def test_dump_restore_from_stdin(self):
        dump = self.run_map(self.ini, "dump").stdout
        lines = [json.loads(line) for line in dump.splitlines()]
        header = lines[0]
        self.assertEqual(header["coexist_dump"], 1)
        self.assertEqual((header["users"], header["aliases"], header["audit"]), (5, 2, 8))
        self.assertEqual(sum("user" in x for x in lines[1:]), 5)
        self.assertEqual(sum("audit" in x for x in lines[1:]), 8)
        other = self.config("other")
        r = self.run_map(other, "restore", "-", stdin=dump)
        self.assertIn("restored 5 users, 2 aliases, 8 audit entries", r.stdout)
        for args in (["digest"], ["history"], ["history", "--format", "csv"], ["stats"]):
            a = self.run_map(self.ini, *args).stdout.replace(os.path.join(self.dir, "map"), "MAP")
            b = self.run_map(other, *args).stdout.replace(os.path.join(self.dir, "other"), "MAP")
            # The restored file is smaller (one transaction instead of many): size lines differ.
            same = [line for line in a.splitlines() if not line.startswith("map size:")]
            self.assertEqual(same, [line for line in b.splitlines() if not line.startswith("map size:")], args)
        # A damaged line: exit 2, the line named, the map unchanged.
        broken = dump.splitlines()
        broken[3] = broken[3][:-1]
        r = self.run_map(other, "restore", "--replace", "-", stdin="\n".join(broken) + "\n", check=False)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("(stdin):4: not JSON", r.stderr)
        self.assertEqual(self.run_map(other, "digest").stdout, self.run_map(self.ini, "digest").stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
