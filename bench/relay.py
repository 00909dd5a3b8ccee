#!/usr/bin/env python3
"""Relay throughput: coexist through a real Postfix, against plain Postfix and the floors.

One run, same machine, same map (N users, user i migrated iff i % 10 == 0), same messages,
deliveries to two loopback smtp-sinks (google, newsys) without dump files. Each configuration
has its own private Postfix, started once and used by every run. The configurations are
interleaved round by round, so drift hits them alike (run_order()): the two of a Done-when pair
(coexist and its floor) run back to back, in turns first, and each round starts one
configuration or pair further on, so none always runs right after the same one. Before each run
the machine settles (settle(): the last run's queue files written out, the cores idle). A
figure is the median of the rounds; a Done-when ratio is the median of the per-round ratios of
its pair, whose two runs the VM's slow and fast phases move together.

Configurations:
  plain            virtual_alias_maps = lmdb: (the migrated users, postmap'd): 1.00
  null-milter      plain, plus the bench's null milter (bench_null_milter: accepts everything,
                   changes nothing), libmilter's default negotiation; its worker threads
                   have coexist-milter's stack size (milter/src/worker_threads.hpp)
  null-milter-nr   the same, the null milter negotiating no replies (--no-reply)
  null-milter-nr-edits
                   the null milter negotiating no replies and making coexist-milter's changes
                   at end of message (--edits): one X-Coexist-Trace header on every message,
                   and for each migrated recipient (decided from the address: bench_users.hpp)
                   the delete and the add with ORCPT; no virtual_alias_maps, as for coexist-
                   milter. The floor of the design itself: no map, no log lines
  milter           coexist-milter over inet:
  milter-unix      coexist-milter over unix:
  socketmap        coexist-policyd's socketmap as shipped (contrib/postfix/main.cf.socketmap:
                   virtual_alias_maps and relay_recipient_maps = socketmap:,
                   virtual_alias_domains empty), on the bench's port
  null-socketmap   the same settings with the bench's null socketmap server
                   (bench_null_lookup_server)
  milter+policy    coexist-milter, and check_policy_service = coexist-policyd at RCPT

Loads: "mx" (one message per SMTP session, 20 sessions in parallel) and "smarthost" (4 sessions
of many messages each, SMARTHOST_MESSAGES_FACTOR times the messages of an MX run: at 1,000
a run lasted 3 s, shorter than the kernel's 5 s writeback period, which then fell in some runs
and not others), with 1 or 5 recipients per message. Every run is checked: every
recipient delivered exactly once (from the maillog), the migrated ones at newsys as
user@o365.contoso.com, the others at google unchanged; a wrong answer fails the run.
Beside msgs/s: each daemon's CPU per message (utime+stime from /proc/PID/stat, delta over the
run), the load client's own CPU per message, and the whole machine's (/proc/stat).

  sudo bench/relay.py [--build DIR] [--quick] [--markdown FILE] [--rounds R] [--messages M]
                      [--loads mx1,mx5,smarthost1] [--configs plain,milter,...]
"""

import argparse
import collections
import datetime
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SOURCE, "tests", "harness"))
from coexist_harness import Lab, postmap, tool_config_dir, wait_listening  # noqa: E402
from coexist_harness.ports import is_listening_unix, wait_until  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_map import migrated, new_map, write_users_csv  # noqa: E402
from machine import machine_busy_seconds, settle  # noqa: E402
from rounds import paired_ratio  # noqa: E402

DOMAIN = "contoso.com"
ROUTING_DOMAIN = "o365.contoso.com"
SENDER = "bench@example.org"
MX_SESSIONS = 20        # parallel SMTP sessions, one message each (an MX)
SMARTHOST_SESSIONS = 4  # parallel SMTP sessions, many messages each (a smart host)
SMARTHOST_MESSAGES_FACTOR = 3  # a smart host run sends 3x the messages of an MX run (docstring)
RUN_TIMEOUT = 600       # seconds a run may take before it fails (sending and delivering)
TICKS = os.sysconf("SC_CLK_TCK")


# ---- the map and the daemons --------------------------------------------------------------

def write_ini(path, lab, ports, milter_socket):
    with open(path, "w") as f:
        f.write(f"""[map]
path = {lab.path('map')}
[routing]
unknown_recipient = relay
[domain {DOMAIN}]
routing_domain = {ROUTING_DOMAIN}
[milter]
socket = {milter_socket}
socket_group = postfix
socket_mode = 0660
user = nobody
[policyd]
user = nobody
policy_socket = inet:{ports['policy']}@127.0.0.1
socketmap_socket = inet:{ports['socketmap']}@127.0.0.1
""")
    return path


def build_map(lab, build, ini, users):
    """coexist's map and the same routing as a plain Postfix lmdb: table; returns the table spec."""
    csv = lab.path("users.csv")
    write_users_csv(csv, users)
    tool = new_map(build, ini, lab.path("map"))
    r = subprocess.run([tool, "-c", ini, "import", csv], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"coexist-map import: {r.stderr}")
    table = lab.path("virtual")
    with open(table, "w") as f:
        for i in range(0, users):
            if migrated(i):
                f.write(f"user{i}@{DOMAIN} user{i}@{ROUTING_DOMAIN}\n")
    r = postmap(tool_config_dir(lab.path()), f"lmdb:{table}", timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"postmap lmdb:{table}: {r.stderr}")
    return f"lmdb:{table}"


SHIPPED_SOCKETMAP = os.path.join(SOURCE, "contrib", "postfix", "main.cf.socketmap")


def shipped_socketmap_settings(port):
    """The main.cf settings of contrib/postfix/main.cf.socketmap, the way-3 snippet admins
    deploy, with its socketmap on `port`: what Postfix asks of the socketmap (the virtual and
    recipients tables, and no bare-domain probes) is then what it asks on a real relay."""
    settings = {}
    with open(SHIPPED_SOCKETMAP) as f:
        for line in f:
            if line.startswith(("#", " ", "\t")) or "=" not in line:
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = value.replace("inet:127.0.0.1:10032:", f"inet:127.0.0.1:{port}:")
    if "10032" in " ".join(settings.values()) or "virtual_alias_maps" not in settings:
        raise RuntimeError(f"{SHIPPED_SOCKETMAP}: not the settings relay.py expects: {settings}")
    return settings


def cpu_seconds(pid):
    """utime+stime of the whole process (every thread, live or gone), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def milter_negotiation(port):
    """What a milter asks of the MTA: one SMFIC_OPTNEG offering everything Postfix offers;
    'no-reply' when it asks for SMFIP_NR_* (any), else 'default'. Returns (name, protocol mask)."""
    offer_actions = 0x1FF
    offer_protocol = 0x001FFFFF
    payload = b"O" + struct.pack(">III", 6, offer_actions, offer_protocol)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(struct.pack(">I", len(payload)) + payload)
        head = _read_exact(s, 4)
        body = _read_exact(s, struct.unpack(">I", head)[0])
    if body[:1] != b"O" or len(body) < 13:
        raise RuntimeError(f"milter on port {port}: unexpected negotiation reply {body[:16]!r}")
    _, _, protocol = struct.unpack(">III", body[1:13])
    nr_flags = 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x80000 | 0x80
    return ("no-reply" if protocol & nr_flags else "default"), protocol


def _read_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise RuntimeError("milter closed the connection during negotiation")
        data += chunk
    return data


# ---- the load client ----------------------------------------------------------------------

class SmtpError(RuntimeError):
    pass


def _reply(f, expect, what):
    """Reads one (possibly multi-line) SMTP reply; raises SmtpError unless its code is `expect`."""
    lines = []
    for _ in range(100):  # bounded: no reply of ours has more lines
        line = f.readline()
        if not line:
            raise SmtpError(f"{what}: connection closed")
        lines.append(line.decode("ascii", "replace").rstrip())
        if len(line) < 4 or line[3:4] != b"-":
            break
    if not lines[-1].startswith(str(expect)):
        raise SmtpError(f"{what}: expected {expect}, got {' / '.join(lines)}")


def message_bytes(n, recipients):
    # A small message with the headers a real one has (the milter sees each header).
    return (f"From: <{SENDER}>\r\nTo: <{recipients[0]}>\r\nSubject: relay bench {n}\r\n"
            f"Date: Sat, 05 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{n}.relay@bench.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"Message {n} of the relay benchmark.\r\n.\r\n").encode()


def smtp_session(port, jobs):
    """One SMTP session sending each (n, recipients) of `jobs`, pipelined as Postfix offers
    (MAIL, every RCPT and DATA in one write). Raises SmtpError on any unexpected reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        f = s.makefile("rb")
        _reply(f, 220, "banner")
        s.sendall(b"EHLO bench.test\r\n")
        _reply(f, 250, "EHLO")
        for n, rcpts in jobs:
            envelope = f"MAIL FROM:<{SENDER}>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts) + "DATA\r\n"
            s.sendall(envelope.encode())
            _reply(f, 250, f"message {n}: MAIL")
            for r in rcpts:
                _reply(f, 250, f"message {n}: RCPT {r}")
            _reply(f, 354, f"message {n}: DATA")
            s.sendall(message_bytes(n, rcpts))
            _reply(f, 250, f"message {n}: end of data")
        s.sendall(b"QUIT\r\n")
        _reply(f, 221, "QUIT")


def recipients_of(n, per_message, users):
    """Message n's recipients: distinct users spread over the map (7919 is prime to 10**k, so
    the indices (n*R+k)*7919 mod users are distinct while n*R+k < users, and 10% are migrated)."""
    return [f"user{((n * per_message + k) * 7919) % users}@{DOMAIN}" for k in range(per_message)]


def send_load(port, load, messages, per_message, users):
    """Sends every message; returns the list of errors (empty when all were accepted)."""
    errors = []
    jobs = [(n, recipients_of(n, per_message, users)) for n in range(messages)]
    if load == "mx":
        lock = threading.Lock()
        pending = iter(jobs)

        def worker():
            while not errors:
                with lock:
                    job = next(pending, None)
                if job is None:
                    return
                try:
                    smtp_session(port, [job])
                except (SmtpError, OSError) as e:
                    errors.append(str(e))
        threads = [threading.Thread(target=worker) for _ in range(MX_SESSIONS)]
    else:
        def worker(k):
            try:
                smtp_session(port, jobs[k::SMARTHOST_SESSIONS])
            except (SmtpError, OSError) as e:
                errors.append(str(e))
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(SMARTHOST_SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RUN_TIMEOUT)
    if any(t.is_alive() for t in threads):
        errors.append(f"load client still running after {RUN_TIMEOUT} s")
    return errors


# ---- one run ----------------------------------------------------------------------------------

DELIVERY = re.compile(r"postfix/[\w-]+\[\d+\]: [0-9A-Za-z]+: to=<(?P<to>[^>]*)>, (?:orig_to=<[^>]*>, )?"
                      r"relay=(?P<relay>[^,]+),.*? status=(?P<status>\w+)")


class Maillog:
    """An instance's maillog read as it grows: the delivery lines since the last mark()."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.partial = b""
        self.lines = []
        self.sent = 0

    def mark(self):
        self.poll()
        self.lines, self.sent = [], 0

    def poll(self):
        """Reads what was appended; returns the count of status=sent lines since mark()."""
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self.partial + data
        cut = data.rfind(b"\n") + 1
        self.partial = data[cut:]
        for line in data[:cut].decode("utf-8", "replace").splitlines():
            if " status=" in line:
                self.lines.append(line)
                self.sent += " status=sent " in line
        return self.sent


def check_deliveries(name, log, sinks, messages, per_message, users):
    """Every recipient delivered exactly once, to the right sink, with the right address."""
    expected = collections.Counter()
    for n in range(messages):
        for r in recipients_of(n, per_message, users):
            i = int(r[4:r.index("@")])
            if migrated(i):
                expected[(f"user{i}@{ROUTING_DOMAIN}", "newsys")] += 1
            else:
                expected[(r, "google")] += 1
    port_sink = {hop.rsplit(":", 1)[1]: sink for sink, hop in sinks.items()}
    got = collections.Counter()
    deferred, other = 0, []
    for line in log.lines:
        m = DELIVERY.search(line)
        if m and m["status"] == "sent":
            got[(m["to"], port_sink.get(m["relay"].rsplit(":", 1)[-1], m["relay"]))] += 1
        elif m and m["status"] == "deferred":
            deferred += 1  # retried, then sent (or missing below): reported, not an error
        else:
            other.append(line)
    if got != expected or other:
        missing = expected - got
        extra = got - expected
        raise RuntimeError(
            f"{name}: wrong deliveries: {sum(missing.values())} missing (e.g. {list(missing)[:3]}), "
            f"{sum(extra.values())} unexpected (e.g. {list(extra)[:3]}), "
            f"{len(other)} not sent (e.g. {other[:2]})")
    return deferred


def measure(name, pf, log, routes, sinks, daemons, load, messages, per_message, users):
    """One run against a running instance: send, wait for every delivery, check them."""
    settle()
    log.mark()
    want = messages * per_message
    cpu_before = {d: cpu_seconds(p.pid) for d, p in daemons.items()}
    client_before = time.process_time()
    machine_before = machine_busy_seconds()
    start = time.monotonic()
    errors = send_load(pf.smtpd_port, load, messages, per_message, users)
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} sessions failed, e.g. {errors[0]}\n{pf.log_tail()}")
    deadline = start + RUN_TIMEOUT
    while log.poll() < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: {log.sent} of {want} deliveries after {RUN_TIMEOUT} s\n"
                               f"{pf.log_tail()}")
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    machine = machine_busy_seconds() - machine_before
    client_cpu = time.process_time() - client_before
    cpu = {d: cpu_seconds(p.pid) - cpu_before[d] for d, p in daemons.items()}
    deferred = check_deliveries(name, log, sinks, messages, per_message, users)
    return {"rate": messages / elapsed, "cpu": cpu, "client_cpu": client_cpu, "deferred": deferred,
            "machine": machine, "busy": machine / elapsed / os.cpu_count()}


# ---- the order of the runs -------------------------------------------------------------------

# The Done-when pairs (coexist, its floor): a ratio of two runs is only as steady as the machine
# between them, so the two run back to back.
DONE_WHEN_PAIRS = {"milter": "null-milter-nr", "socketmap": "null-socketmap"}


def run_order(names, r):
    """The configurations of round r (from 0), in the order they run.

    Each Done-when pair runs back to back, the floor first in even rounds and coexist first in
    odd ones (so neither always gets the machine as the other left it); the units (a pair or a
    lone configuration) start one further on each round, so none always follows the same one.
    """
    partner = {**DONE_WHEN_PAIRS, **{floor: c for c, floor in DONE_WHEN_PAIRS.items()}}
    units, placed = [], set()
    for name in names:
        if name in placed:
            continue
        other = partner.get(name)
        unit = [name, other] if other in names and other not in placed else [name]
        if len(unit) == 2 and unit[0] in DONE_WHEN_PAIRS:
            unit.reverse()  # the floor first
        placed.update(unit)
        units.append(unit)
    k = r % len(units)
    units = units[k:] + units[:k]
    return [name for unit in units for name in (unit if r % 2 == 0 else unit[::-1])]


# ---- reporting ------------------------------------------------------------------------------

def fmt_ms(seconds_per_msg):
    return f"{seconds_per_msg * 1000:.2f}"


def summarize(results, messages):
    """{config: {'rate': median msgs/s, 'runs': [...], 'cpu': {daemon: median s/msg}, ...}}"""
    out = {}
    for name, runs in results.items():
        if not runs:
            continue
        daemons = runs[0]["cpu"].keys()
        out[name] = {
            "rate": statistics.median(r["rate"] for r in runs),
            "runs": [r["rate"] for r in runs],
            "cpu_runs": [{d: v / messages for d, v in r["cpu"].items()} for r in runs],
            "cpu": {d: statistics.median(r["cpu"][d] for r in runs) / messages for d in daemons},
            "client_cpu": statistics.median(r["client_cpu"] for r in runs) / messages,
            "machine": statistics.median(r["machine"] for r in runs) / messages,
            "busy": statistics.median(r["busy"] for r in runs),
            "deferred": sum(r["deferred"] for r in runs),
        }
    return out


def verdict(ok):
    return "met" if ok else "MISSED"


def markdown(args, command, setup, loads, summaries, negotiation, runtime, missing):
    lines = [f"## Relay throughput through Postfix (`bench/relay.py`)", ""]
    lines.append(f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, `{command}` ({runtime / 60:.1f} min): "
                 f"{setup['users']:,} users (user i migrated iff i % 10 == 0), {setup['messages']:,} "
                 f"messages per MX run and {setup['messages'] * SMARTHOST_MESSAGES_FACTOR:,} per smart host "
                 f"run, {setup['rounds']} round(s), configurations interleaved round by "
                 f"round; load average {setup['load_before']} at the start, {os.getloadavg()[0]:.2f} at "
                 f"the end; coexist {setup['revision']}.")
    lines.append("")
    lines.append(f"Loads: **mx** = one message per SMTP session, {MX_SESSIONS} sessions in parallel; "
                 f"**smarthost** = {SMARTHOST_SESSIONS} sessions of many messages. The client pipelines "
                 "MAIL/RCPT/DATA as Postfix offers. Each configuration has its own private Postfix "
                 "(started once, used by every round and load), delivering to two loopback smtp-sinks (no dump files); msgs/s = messages / (first connection to "
                 "last delivery logged). Every run is checked from the maillog: every recipient "
                 "delivered exactly once, migrated users at newsys as user@o365.contoso.com, the "
                 "others at google unchanged. CPU per message: utime+stime of the daemon process(es) "
                 "over the run (/proc/PID/stat, 10 ms ticks), divided by messages; client: the "
                 "load client's own CPU; machine: every core's non-idle time over the run "
                 "(/proc/stat), divided by messages, and as a share of all cores (cores busy). "
                 "Every milter here, the null ones included, gives libmilter's worker threads "
                 "coexist-milter's 256 KiB stacks (milter/src/worker_threads.hpp), so that glibc "
                 "reuses them instead of mapping 8 MiB for most new workers (about two a message at an MX). "
                 "Negotiation seen on the wire (SMFIC_OPTNEG): "
                 + ", ".join(f"{k} {v[0]} (protocol 0x{v[1]:x})" for k, v in negotiation.items()) + ".")
    lines.append("")
    for load_key, title in loads:
        s = summaries.get(load_key)
        if not s:
            continue
        base = s["plain"]["rate"] if "plain" in s else None
        lines.append(f"### {title}")
        lines.append("")
        lines.append("| configuration | msgs/s (median) | runs | ratio to plain | daemon CPU ms/msg | client CPU ms/msg "
                     "| machine CPU ms/msg | cores busy |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for name, r in s.items():
            ratio = f"{r['rate'] / base:.2f}" if base else ""
            cpu = ", ".join(f"{d} {fmt_ms(v)}" for d, v in r["cpu"].items()) or "-"
            runs = ", ".join(f"{x:.0f}" for x in r["runs"])
            note = f" ({r['deferred']} deferred attempts)" if r["deferred"] else ""
            lines.append(f"| {CONFIG_TITLES[name]}{note} | {r['rate']:.0f} | {runs} | {ratio} | {cpu} | "
                         f"{fmt_ms(r['client_cpu'])} | {fmt_ms(r['machine'])} | {r['busy'] * 100:.0f}% |")
        lines.append("")
    lines += done_when(summaries, negotiation, missing)
    return "\n".join(lines) + "\n"


def cpu_ratio(milter, floor, floor_daemon):
    """coexist-milter's CPU per message against floor_daemon's, paired round by round."""
    return paired_ratio([r["coexist-milter"] for r in milter["cpu_runs"]],
                        [r[floor_daemon] for r in floor["cpu_runs"]])


def done_when(summaries, negotiation, missing):
    out = ["### Done when (issue 13)", "",
           "The ratio is the median of the per-round ratios (each round runs coexist and its floor "
           "back to back, in turns first; a reading aid's two runs may be further apart), given to 3 decimals, as it is judged; the per-round ratios are "
           "beside it. The two medians need not divide to it: they may come from different rounds.", "",
           "| figure | load | coexist (median) | floor (median) | ratio | per round | wanted | verdict |",
           "|---|---|---|---|---|---|---|---|"]
    same = "null-milter-nr" if negotiation.get("coexist-milter", ("default",))[0] == "no-reply" else "null-milter"

    def row(title, load_key, ours, floor, ratio, per_round, target, ok):
        rounds = ", ".join(f"{x:.2f}" for x in per_round)
        out.append(f"| {title} | {load_key} | {ours} | {floor} | {ratio:.3f} | {rounds} | {target} | "
                   f"{verdict(ok) if ok is not None else 'not a target'} |")

    for load_key, s in summaries.items():
        if "milter" in s and same in s:
            m, n = s["milter"], s[same]
            ratio, per_round = paired_ratio(m["runs"], n["runs"])
            row(f"coexist-milter msgs/s vs {CONFIG_TITLES[same]}", load_key, f"{m['rate']:.0f}", f"{n['rate']:.0f}",
                ratio, per_round, ">= 0.95", ratio >= 0.95)
            ratio, per_round = cpu_ratio(m, n, same)
            row(f"coexist-milter CPU/msg vs {CONFIG_TITLES[same]}", load_key,
                f"{fmt_ms(m['cpu']['coexist-milter'])} ms", f"{fmt_ms(n['cpu'][same])} ms", ratio, per_round,
                "<= 1.1", ratio <= 1.1)
            if same == "null-milter-nr" and "null-milter-nr-edits" in s:
                # Not a target of the issue: it tells how much of a gap above is the protocol work
                # the design asks of coexist-milter at end of message (the trace header, the
                # delete and add of each rewritten recipient), rather than its own lookups and logs.
                h = s["null-milter-nr-edits"]
                ratio, per_round = paired_ratio(m["runs"], h["runs"])
                row(f"(reading aid) coexist-milter msgs/s vs {CONFIG_TITLES['null-milter-nr-edits']}", load_key,
                    f"{m['rate']:.0f}", f"{h['rate']:.0f}", ratio, per_round, "-", None)
                ratio, per_round = cpu_ratio(m, h, "null-milter-nr-edits")
                row(f"(reading aid) coexist-milter CPU/msg vs {CONFIG_TITLES['null-milter-nr-edits']}", load_key,
                    f"{fmt_ms(m['cpu']['coexist-milter'])} ms", f"{fmt_ms(h['cpu']['null-milter-nr-edits'])} ms",
                    ratio, per_round, "-", None)
        if "socketmap" in s and "null-socketmap" in s:
            m, n = s["socketmap"], s["null-socketmap"]
            ratio, per_round = paired_ratio(m["runs"], n["runs"])
            row("socketmap msgs/s vs null socketmap server", load_key, f"{m['rate']:.0f}", f"{n['rate']:.0f}",
                ratio, per_round, ">= 0.95", ratio >= 0.95)
        elif "socketmap" in s and "null-socketmap" in missing:
            out.append(f"| socketmap msgs/s vs null socketmap server | {load_key} | {s['socketmap']['rate']:.0f} | "
                       f"not measured ({missing['null-socketmap']}) | | | >= 0.95 | MISSED |")
    out.append("")
    return out


CONFIG_TITLES = {
    "plain": "plain Postfix, `virtual_alias_maps = lmdb:`",
    "null-milter": "null milter, default negotiation",
    "null-milter-nr": "null milter, no-reply negotiation",
    "null-milter-nr-edits": "null milter, no-reply negotiation, makes coexist-milter's edits",
    "milter": "coexist-milter (`inet:`)",
    "milter-unix": "coexist-milter (`unix:`)",
    "socketmap": "socketmap (`coexist-policyd`, main.cf as in contrib/postfix/main.cf.socketmap)",
    "null-socketmap": "null socketmap server, the same main.cf",
    "milter+policy": "coexist-milter + `check_policy_service`",
}


# ---- main -------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--quick", action="store_true", help="a smoke run (under 2 minutes), every answer checked")
    ap.add_argument("--markdown", help="write this benchmark's RESULTS.md section to FILE")
    ap.add_argument("--users", type=int)
    ap.add_argument("--messages", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--loads", help="only these loads, comma-separated (mx1, mx5, smarthost1): a focused A/B")
    ap.add_argument("--configs", help="only these configurations, comma-separated (names as in this file's docstring)")
    args = ap.parse_args()
    users = args.users or (10_000 if args.quick else 100_000)
    # 1,000 messages a run: a full run took 15.5 min on the 2-core machine with other jobs on it
    # (load average 18-23); the 3,000 (--messages 3000) fits an idle machine.
    messages = args.messages or (100 if args.quick else 1000)
    # 5 rounds, as the issue measured: an MX run (20 sessions of one message) varies by a quarter
    # from round to round on a 2-core machine (197, 266, 248 msgs/s), and a median of 3 moves with it.
    rounds = args.rounds or (1 if args.quick else 5)
    if max(messages * 5, messages * SMARTHOST_MESSAGES_FACTOR) >= users:
        sys.exit("relay.py: need users > 5 x messages (distinct recipients)")
    build = os.path.abspath(args.build)
    command = "sudo bench/relay.py " + " ".join(sys.argv[1:])
    started = time.monotonic()
    revision = subprocess.run(["git", "-C", SOURCE, "describe", "--always", "--dirty"], capture_output=True,
                              text=True).stdout.strip()
    setup = {"users": users, "messages": messages, "rounds": rounds, "revision": revision,
             "load_before": f"{os.getloadavg()[0]:.2f}"}

    null_milter = os.path.join(build, "bench", "bench_null_milter")
    null_lookup = os.path.join(build, "bench", "bench_null_lookup_server")
    missing = {}
    with Lab("bench-relay") as lab:
        os.chmod(lab.path(), 0o755)
        ports = {k: lab.free_port() for k in ("milter", "policy", "socketmap", "null_milter",
                                              "null_milter_nr", "null_milter_nr_edits", "null_socketmap",
                                              "null_policy")}
        unix_sock = lab.path("milter.sock")
        ini = write_ini(lab.path("coexist.ini"), lab, ports, f"inet:{ports['milter']}@127.0.0.1")
        ini_unix = write_ini(lab.path("coexist-unix.ini"), lab, ports, f"unix:{unix_sock}")
        plain_table = build_map(lab, build, ini, users)
        print(f"relay.py: map of {users} users built ({time.monotonic() - started:.1f} s)", file=sys.stderr)

        daemons = {}
        daemons["coexist-milter"] = lab.spawn("milter", [os.path.join(build, "milter", "coexist-milter"),
                                                         "-c", ini])
        daemons["coexist-milter-unix"] = lab.spawn("milter-unix", [os.path.join(build, "milter", "coexist-milter"),
                                                                   "-c", ini_unix])
        daemons["coexist-policyd"] = lab.spawn("policyd", [os.path.join(build, "policyd", "coexist-policyd"),
                                                           "-c", ini])
        daemons["null-milter"] = lab.spawn("null-milter", [null_milter, "--socket",
                                                           f"inet:{ports['null_milter']}@127.0.0.1"])
        daemons["null-milter-nr"] = lab.spawn("null-milter-nr", [null_milter, "--socket",
                                                                 f"inet:{ports['null_milter_nr']}@127.0.0.1",
                                                                 "--no-reply"])
        daemons["null-milter-nr-edits"] = lab.spawn("null-milter-nr-edits", [
            null_milter, "--socket", f"inet:{ports['null_milter_nr_edits']}@127.0.0.1", "--no-reply",
            "--edits"])
        if os.access(null_lookup, os.X_OK):
            daemons["null-socketmap"] = lab.spawn("null-lookup", [
                null_lookup, "--socketmap", f"inet:127.0.0.1:{ports['null_socketmap']}",
                "--policy", f"inet:127.0.0.1:{ports['null_policy']}"])
        else:
            missing["null-socketmap"] = f"{null_lookup} not built"
            print(f"relay.py: {missing['null-socketmap']}: the null socketmap configuration is skipped",
                  file=sys.stderr)
        for key in ("milter", "policy", "socketmap", "null_milter", "null_milter_nr", "null_milter_nr_edits"):
            wait_listening("127.0.0.1", ports[key], 20)
        if "null-socketmap" in daemons:
            wait_listening("127.0.0.1", ports["null_socketmap"], 20)
        wait_until(lambda: is_listening_unix(unix_sock), 20, f"coexist-milter on {unix_sock}")

        negotiation = {"coexist-milter": milter_negotiation(ports["milter"]),
                       "null milter": milter_negotiation(ports["null_milter"]),
                       "null milter --no-reply": milter_negotiation(ports["null_milter_nr"]),
                       "null milter --no-reply --edits": milter_negotiation(ports["null_milter_nr_edits"])}
        if (negotiation["null milter"][0] != "default" or negotiation["null milter --no-reply"][0] != "no-reply"
                or negotiation["null milter --no-reply --edits"][0] != "no-reply"):
            raise RuntimeError(f"null milters negotiate {negotiation}, not what they are named for")
        print(f"relay.py: negotiation {negotiation}", file=sys.stderr)

        sinks = {}
        for name in ("google", "newsys"):
            port = lab.free_port()
            lab.spawn(name, ["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "256"])
            wait_listening("127.0.0.1", port, 10)
            sinks[name] = f"smtp:[127.0.0.1]:{port}"
        routes = {DOMAIN: sinks["google"], ROUTING_DOMAIN: sinks["newsys"]}

        configs = {
            "plain": ({"virtual_alias_maps": plain_table}, []),
            # The null milters change nothing: plain's table routes, as it would beside any
            # filter; what they add to plain is the cost of a libmilter filter itself.
            "null-milter": ({"virtual_alias_maps": plain_table,
                             "smtpd_milters": f"inet:127.0.0.1:{ports['null_milter']}"}, ["null-milter"]),
            "null-milter-nr": ({"virtual_alias_maps": plain_table,
                                "smtpd_milters": f"inet:127.0.0.1:{ports['null_milter_nr']}"},
                               ["null-milter-nr"]),
            # It routes the migrated itself, as coexist-milter does: no virtual_alias_maps.
            "null-milter-nr-edits": ({"smtpd_milters": f"inet:127.0.0.1:{ports['null_milter_nr_edits']}"},
                                     ["null-milter-nr-edits"]),
            "milter": ({"smtpd_milters": f"inet:127.0.0.1:{ports['milter']}"}, ["coexist-milter"]),
            "milter-unix": ({"smtpd_milters": f"unix:{unix_sock}"}, ["coexist-milter-unix"]),
            "socketmap": (shipped_socketmap_settings(ports["socketmap"]), ["coexist-policyd"]),
            "null-socketmap": (shipped_socketmap_settings(ports["null_socketmap"]), ["null-socketmap"]),
            "milter+policy": ({"smtpd_milters": f"inet:127.0.0.1:{ports['milter']}",
                               "smtpd_recipient_restrictions":
                                   f"check_policy_service inet:127.0.0.1:{ports['policy']}"},
                              ["coexist-milter", "coexist-policyd"]),
        }
        for name in missing:
            configs.pop(name, None)
        # Every load has the design's own floor (null-milter-nr-edits) beside the issue's: with 5
        # recipients a message has half a rewrite on average, where the edits weigh most.
        core = [c for c in ("plain", "null-milter-nr", "null-milter-nr-edits", "milter", "socketmap",
                            "null-socketmap") if c in configs]
        if negotiation["coexist-milter"][0] == "default":
            core.insert(1, "null-milter")  # the floor with coexist-milter's own negotiation
        # (title, load, recipients per message, configurations, messages per run)
        loads = [("mx, 1 recipient", "mx", 1, list(configs), messages),
                 ("mx, 5 recipients", "mx", 5, core, messages),
                 ("smarthost, 1 recipient", "smarthost", 1, core, messages * SMARTHOST_MESSAGES_FACTOR)]
        if args.loads:
            wanted = set(args.loads.split(","))
            loads = [entry for entry in loads if f"{entry[1]}{entry[2]}" in wanted]
        if args.configs:
            wanted = set(args.configs.split(","))
            unknown = wanted - set(configs)
            if unknown:
                sys.exit(f"relay.py: no configuration named {', '.join(sorted(unknown))}")
            loads = [(t, l, n, [c for c in names if c in wanted], m) for t, l, n, names, m in loads]
            configs = {c: v for c, v in configs.items() if c in wanted}

        # One private Postfix per configuration for the whole benchmark (starting one costs more
        # than a run): every load and round of a configuration goes to the same instance.
        instances = {}
        for name, (main_cf, _) in configs.items():
            pf = lab.add_postfix(name.replace("+", "-"), routes=routes,
                                 main_cf=dict(main_cf, default_process_limit="100"))
            instances[name] = (pf, Maillog(pf.maillog))
        print(f"relay.py: {len(instances)} Postfix instances up ({time.monotonic() - started:.1f} s)",
              file=sys.stderr)

        results = {title: {c: [] for c in names} for title, _, _, names, _ in loads}
        for r in range(rounds):  # interleaved, so drift hits every configuration alike
            for title, load, per_message, names, messages in loads:
                for name in run_order(names, r):
                    _, used = configs[name]
                    pf, log = instances[name]
                    res = measure(f"round {r + 1}, {title}, {name}", pf, log, routes, sinks,
                                  {d: daemons[d] for d in used}, load, messages, per_message, users)
                    results[title][name].append(res)
                    cpu = ", ".join(f"{d} {fmt_ms(v / messages)} ms/msg" for d, v in res["cpu"].items())
                    print(f"round {r + 1}, {title}: {name}: {res['rate']:.0f} msgs/s {cpu}, machine "
                          f"{fmt_ms(res['machine'] / messages)} ms/msg, {res['busy'] * 100:.0f}% busy",
                          file=sys.stderr)
        for name, p in daemons.items():
            if not p.alive():
                raise RuntimeError(f"{name} exited during the benchmark:\n{p.log()[-2000:]}")

    summaries = {title: summarize(results[title], m) for title, _, _, _, m in loads}
    text = markdown(args, command, setup, [(t, t) for t, _, _, _, _ in loads], summaries, negotiation,
                    time.monotonic() - started, missing)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    failed = [line for line in text.splitlines() if line.endswith("| MISSED |")]
    print(f"relay.py: {time.monotonic() - started:.0f} s; {len(failed)} target(s) missed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench: run as root (private Postfix instances)")
    sys.exit(main())
