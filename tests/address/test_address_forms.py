"""Issue 15, the property test: one address, one answer.

A seeded generator writes a table of tricky recipients (quoted local parts, source routes, mixed
case in Latin with diacritics, Greek, Cyrillic and German ß, with and without an extension after
each recipient_delimiter character, users whose names contain a delimiter, a domain alias, a
reject domain). Each recipient is sent, one message each, through two private Postfix relays:

  - "milter": coexist-milter in smtpd_milters (it sees RCPT TO as the client wrote it);
  - "socketmap": no milter, coexist-policyd's socketmap in virtual_alias_maps and
    relay_recipient_maps (it sees Postfix's own form of the address);

and `coexist-map route` is asked for the same recipients. For every recipient the three must
agree: the RCPT reply class, and which sink got which envelope recipients.

COEXIST_FORMS_SEED fixes the seed (it is printed on every run and with every failure),
COEXIST_FORMS_COUNT the number of recipients (default 240, at least 200 in CI).
"""

import grp
import os
import random
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "harness"))

import coexist_harness as h  # noqa: E402
from coexist_harness.scenarios import DOMAINS_INI  # noqa: E402

MILTER = os.environ.get("COEXIST_MILTER", "")
POLICYD = os.environ.get("COEXIST_POLICYD", "")
MAP_TOOL = os.environ.get("COEXIST_MAP", "")
SEED = int(os.environ.get("COEXIST_FORMS_SEED", str(int(time.time() * 1000) % 1_000_000_007)))
COUNT = int(os.environ.get("COEXIST_FORMS_COUNT", "240"))
DAEMON_USER = "nobody"
SENDER = "sender@fabrikam.example"

INI = """\
[map]
path = {map}

[routing]
recipient_delimiter = +-
keep_extension = yes
unknown_recipient = relay
loop_limit = 3

""" + DOMAINS_INI + """
[domain xn--mller-kva.de]
routing_domain = o365.muller.example

[milter]
socket = inet:{milter_port}@127.0.0.1
user = nobody
socket_group = postfix
socket_mode = 0660

[policyd]
policy_socket = unix:{dir}/policy.sock
socketmap_socket = inet:{socketmap_port}@127.0.0.1
user = nobody
socket_group = postfix
socket_mode = 0660
"""

# The map: local part (as the admin wrote it), domain, state, explicit target.
USERS = [
    ("ann", "contoso.com", "migrated", ""),
    ("bob", "contoso.com", "source", ""),
    ("dave", "contoso.com", "dual", ""),
    ("carol", "contoso.com", "migrated", "carol@contoso.onmicrosoft.com"),
    ("mary", "contoso.com", "migrated", ""),
    ("mary-ann", "contoso.com", "source", ""),   # a delimiter character in her name
    ("gapps1", "contoso.com", "migrated", ""),
    ("Jörg", "contoso.com", "migrated", ""),
    ("Straße", "contoso.com", "dual", ""),
    ("Σοφία", "contoso.com", "migrated", ""),
    ("Дмитрий", "contoso.com", "source", ""),
    ("José.Núñez", "contoso.com", "migrated", ""),
    ('"john doe"', "contoso.com", "migrated", ""),  # needs its quotes
    ("bob", "northwind.com", "source", ""),
    ("nina", "northwind.com", "migrated", ""),
    ("Ольга", "northwind.com", "dual", ""),
    # An internationalized domain, managed as its A-label; the CSV writes it either way.
    ("uwe", "müller.de", "migrated", ""),
    ("Jörg", "xn--mller-kva.de", "dual", ""),
    ("bob", "xn--mller-kva.de", "source", ""),
]
UNKNOWN = ["ghost", "Ζωή", "ÉLODIE", "nobody-else"]
# müller.de is xn--mller-kva.de: Postfix matches it against relay_domains as its A-label,
# and the daemons read it so (a sender with SMTPUTF8 writes the U-label).
DOMAINS = ["contoso.com", "Contoso.COM", "contoso.net", "northwind.com", "NorthWind.com", "müller.de", "MÜLLER.de",
           "xn--mller-kva.de"]
EXTENSIONS = ["news", "Tag", "x-y", "Ärger", "λ"]


def mixed_case(rng, text):
    out = []
    for ch in text:
        r = rng.random()
        out.append(ch.upper() if r < 0.35 else ch.lower() if r < 0.7 else ch)
    s = "".join(out)
    # Python's upper() of ß is "SS", which ICU folds back to "ss": both spellings are one user.
    return s


def generate(rng, count):
    """`count` distinct recipients as a client would write them in RCPT TO (without <>)."""
    names = [u[0].strip('"') for u in USERS] + UNKNOWN
    out, seen = [], set()
    while len(out) < count:
        local = mixed_case(rng, rng.choice(names))
        if rng.random() < 0.5:
            local += rng.choice("+-") + mixed_case(rng, rng.choice(EXTENSIONS))
        needs_quotes = " " in local
        form = rng.random()
        if needs_quotes or form < 0.3:
            local = '"' + local + '"'
        elif form < 0.4 and "." in local:
            a, _, b = local.partition(".")
            local = f'"{a}".{b}'
        domain = rng.choice(DOMAINS)
        address = local + "@" + domain
        route = rng.random()
        if route < 0.2:
            address = rng.choice(["@relay.example:", "@a.example,@b.example:"]) + address
        elif route < 0.3 and not needs_quotes:
            # The route inside the quotes: Postfix unquotes, then strips it all the same; once
            # (a second route is then part of the local part, @b.example:ann).
            address = ('"' + rng.choice(["@relay.example:", "@a.example,@b.example:", "@a.example:@b.example:"])
                       + local.replace('"', "") + '"@' + domain)
        if address not in seen:
            seen.add(address)
            out.append(address)
    return out


def run_map(ini, *args, check=True):
    r = subprocess.run([MAP_TOOL, "-c", ini, *args], capture_output=True, timeout=120)
    if check and r.returncode != 0:
        raise RuntimeError(f"coexist-map {args[:2]} exited {r.returncode}: {r.stdout!r}{r.stderr!r}")
    return r.stdout.decode("utf-8")


def expected_outcomes(ini, recipients):
    """recipient -> outcome, from `coexist-map route`: ("rcpt", 5|4) for refused recipients,
    else {sink: sorted envelope recipients}."""
    lines = run_map(ini, "route", *recipients).splitlines()
    assert len(lines) == len(recipients), lines
    out = {}
    for rcpt, line in zip(recipients, lines):
        assert line.startswith(rcpt + " "), (rcpt, line)
        action, _, address = line[len(rcpt) + 1:].partition(" ")
        out[rcpt] = (action, address)
    return out


class AddressFormsTest(unittest.TestCase):
    def test_milter_socketmap_and_route_agree_on_every_recipient(self):
        for path in (MILTER, POLICYD, MAP_TOOL):
            if not path or not os.access(path, os.X_OK):
                self.fail(f"binary not found: {path!r} (set COEXIST_MILTER, COEXIST_POLICYD, COEXIST_MAP)")
        print(f"address forms: seed {SEED}, {COUNT} recipients (COEXIST_FORMS_SEED={SEED} repeats it)",
              file=sys.stderr)
        rng = random.Random(SEED)
        recipients = generate(rng, COUNT)
        # A quoted local part with a blank at either end is another mailbox than the name
        # without it; Postfix's second socketmap query (the internal form, " mary@contoso.com")
        # was read as mary's and rewritten to her mailbox.
        recipients += [r for r in ('" mary"@contoso.com', '"mary "@contoso.com', '" nina"@northwind.com')
                       if r not in recipients]
        with h.Lab("address-forms") as lab:
            self.run_lab(lab, recipients)

    def run_lab(self, lab, recipients):
        map_dir = lab.path("map")
        ini = lab.path("coexist.ini")
        milter_port, socketmap_port = lab.free_port(), lab.free_port()
        with open(ini, "w") as f:
            f.write(INI.format(map=map_dir, dir=lab.path(""), milter_port=milter_port,
                               socketmap_port=socketmap_port))
        os.chmod(ini, 0o644)
        os.makedirs(map_dir)
        os.chown(map_dir, 0, grp.getgrnam("nogroup").gr_gid)
        os.chmod(map_dir, 0o750)
        run_map(ini, "init")
        # One import: the map stores only canonical keys, whatever the spelling in the file.
        csv = lab.path("users.csv")
        with open(csv, "w", encoding="utf-8") as f:
            f.write("address,state,target\n")
            for local, domain, state, target in USERS:
                address = f"{local}@{domain}".replace('"', '""')
                f.write(f'"{address}",{state},{target}\n')
        run_map(ini, "import", csv)

        milter = lab.spawn("milter", [MILTER, "-c", ini, "--stderr"])
        milter.wait_log(r"starting coexist-milter", timeout=15)
        policyd = lab.spawn("policyd", [POLICYD, "-c", ini, "--stderr"])
        policyd.wait_log(r"starting", timeout=15)
        h.wait_listening("127.0.0.1", socketmap_port, 10, "coexist-policyd socketmap")

        sinks = {n: lab.add_sink(n) for n in ("google", "newsys", "internet")}
        routes = {"contoso.com": sinks["google"], "contoso.net": sinks["google"],
                  "northwind.com": sinks["google"], "o365.contoso.com": sinks["newsys"],
                  "o365.northwind.com": sinks["newsys"], "contoso.onmicrosoft.com": sinks["newsys"],
                  # Postfix's transport lookup takes the domain as written (case-folded), not
                  # its A-label: the old system is reached under both names.
                  "xn--mller-kva.de": sinks["google"], "müller.de": sinks["google"],
                  "o365.muller.example": sinks["newsys"]}
        common = {"smtputf8_enable": "yes"}
        relays = {
            "milter": lab.add_postfix("milter", routes=routes, default_sink=sinks["internet"], main_cf={
                **common, "smtpd_milters": f"inet:127.0.0.1:{milter_port}", "milter_protocol": "6"}),
            "socketmap": lab.add_postfix("socketmap", routes=routes, default_sink=sinks["internet"], main_cf={
                **common, "virtual_alias_maps": f"socketmap:inet:127.0.0.1:{socketmap_port}:virtual",
                "virtual_alias_domains": "",
                "relay_recipient_maps": f"socketmap:inet:127.0.0.1:{socketmap_port}:recipients"}),
        }

        expected = expected_outcomes(ini, recipients)
        sent = {name: {} for name in relays}  # relay -> recipient -> SendResult
        for name, relay in relays.items():
            with relay.session() as s:
                for rcpt in recipients:
                    utf8 = any(ord(c) > 127 for c in rcpt)
                    sent[name][rcpt] = s.send(SENDER, [rcpt], mail_options=["SMTPUTF8"] if utf8 else [])
        for relay in relays.values():
            relay.wait_queue_empty(timeout=60)
        # What each relay decided, from its maillog: the envelope recipient after virtual
        # aliasing or the milter, and the next hop. smtp-sink does not offer SMTPUTF8, so a UTF-8
        # recipient ends "bounced (SMTPUTF8 is required ...)" at its sink: the decision (which
        # address, which system) is in that line all the same, byte for byte.
        sink_of_port = {str(sink.port): n for n, sink in sinks.items()}
        decided = {name: self.decisions(relay, sink_of_port) for name, relay in relays.items()}

        def observed(relay_name, result):
            code = result.rcpt[next(iter(result.rcpt))][0]
            if code >= 400:
                return ("refused", code // 100)
            return decided[relay_name].get(result.message_id, {})

        failures = []
        actions = set()
        for rcpt in recipients:
            action, address = expected[rcpt]
            actions.add(action)
            via_milter = observed("milter", sent["milter"][rcpt])
            via_socketmap = observed("socketmap", sent["socketmap"][rcpt])
            want = self.outcome_of(action, address, postfix_spelling(rcpt))
            if not (via_milter == via_socketmap == want):
                failures.append(f"  <{rcpt}>: route={action} {address}\n"
                                f"      expected   {want}\n      milter     {via_milter}\n"
                                f"      socketmap  {via_socketmap}")
        # Not vacuous: every kind of answer was met.
        self.assertTrue({"rewrite", "dual", "relay", "reject"} <= actions, (actions, SEED))
        if failures:
            self.fail(f"seed {SEED} (COEXIST_FORMS_SEED={SEED} repeats it): {len(failures)} of "
                      f"{len(recipients)} recipients disagree:\n" + "\n".join(failures[:40]))

    @staticmethod
    def decisions(relay, sink_of_port):
        """message_id -> {sink: sorted envelope recipients}, from the relay's maillog."""
        from coexist_harness.postfix import _DELIVERY, _MESSAGE_ID
        log = relay.log()
        message_of = {m.group("qid"): m.group("mid") for m in _MESSAGE_ID.finditer(log)}
        out = {}
        for line in log.splitlines():
            m = _DELIVERY.search(line)
            if not m or m.group("qid") not in message_of:
                continue
            port = m.group("relay").rsplit(":", 1)[-1]
            sink = sink_of_port.get(port, m.group("relay"))
            got = out.setdefault(message_of[m.group("qid")], {}).setdefault(sink, set())
            got.add(m.group("to"))
        return {mid: {k: sorted(v) for k, v in sinks.items()} for mid, sinks in out.items()}

    @staticmethod
    def outcome_of(action, address, kept):
        """What `coexist-map route` says Postfix must do, in the terms of observed(). `kept` is
        the original recipient as Postfix writes it."""
        if action == "reject":
            return ("refused", 5)
        if action == "tempfail":
            return ("refused", 4)
        new_system = "newsys" if "o365." in address or "onmicrosoft" in address else "internet"
        if action == "rewrite":
            return {new_system: [address]}
        if action == "dual":
            return {"google": [kept], new_system: [address]}
        return {"google": [kept]}


def postfix_spelling(rcpt):
    """The recipient as Postfix writes it after smtpd: source route dropped, unquoted
    (unquote_822_local), quoted again only where it must be (quote_822_local, 8-bit clean),
    case as written. An independent check of the original recipient that relay/dual keep."""
    if rcpt.startswith("@"):
        rcpt = rcpt.split(":", 1)[1]
    local, _, domain = rcpt.rpartition("@")
    internal = local.replace('"', "")
    if internal.startswith("@") and ":" in internal:  # a route that was inside the quotes
        internal = internal.split(":", 1)[1]
    specials = set('()<>@,;:\\"[] ')
    dot_string = (internal and not internal.startswith(".") and not internal.endswith(".")
                  and ".." not in internal and not any(c in specials or ord(c) < 32 for c in internal))
    if internal.startswith("@") and ":" in internal:
        # A second route, left in the local part (@b.example:ann): Postfix's smtp client
        # writes it unquoted, as a route (the next hop reads it so).
        return internal + "@" + domain
    if not dot_string:
        internal = '"' + internal.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return internal + "@" + domain


if __name__ == "__main__":
    h.require_environment()  # exits 77 (skipped) without root or Postfix
    unittest.main(verbosity=2)
