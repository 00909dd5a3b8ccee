#!/usr/bin/env python3
"""The milters' own CPU per message, without Postfix: coexist-milter against the null milters.

bench/relay.py measures the milters inside a real Postfix, where the MTA's own processes share
the two cores and a milter's figure moves by a tenth from round to round. Here the bench plays
Postfix's side of the milter protocol itself (as milter8.c speaks it: SMFIC_OPTNEG offering
everything, the negotiated no-reply stages left unanswered, the queue id macro, SMFIC_ABORT
after a message the milter accepted), so each milter's CPU is spent on its own callbacks and
libmilter's hand-offs only:

  coexist         coexist-milter over inet:, 100,000 users, user i migrated iff i % 10 == 0
  null-nr         bench_null_milter --no-reply: the same negotiation, changes nothing (the floor)
  null-nr-header  the same, adding the one header coexist-milter adds to every managed message

Loads: "managed" (every recipient in contoso.com; a tenth of them rewritten) and "outbound"
(every recipient elsewhere, a smart host's outbound mail); each sent flat out, and paced: every
session pauses PACE seconds after each message, so that each command finds the milter idle, as
at the rate a relay through Postfix reaches (bench/relay.py's smart host load: about 300
messages/s). 4 sessions of many messages, one recipient each. Every answer is checked: the RCPT
and final replies, and at end of message the edits expected of that milter for that recipient
(coexist: the trace header, and for a migrated user the recipient deleted and its routing
address added with ORCPT); a wrong answer fails the run.

CPU per message: utime+stime of the milter process over the run (/proc/PID/stat), divided by
messages; medians over the rounds, the configurations interleaved round by round.

  sudo bench/milter_cpu.py [--build DIR] [--quick] [--markdown FILE] [--rounds R] [--messages M]
"""

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SOURCE, "tests", "harness"))
from coexist_harness import Lab, wait_listening  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_map import migrated, new_map, write_users_csv  # noqa: E402
from machine import settle  # noqa: E402
from relay import cpu_seconds  # noqa: E402
from rounds import paired_ratio  # noqa: E402

DOMAIN, ROUTING_DOMAIN, OUTBOUND_DOMAIN = "contoso.com", "o365.contoso.com", "example.net"
SESSIONS = 4
PACE = 0.012  # seconds a session pauses after each message in the paced runs
USERS = 100_000
TRACE_HEADER = b"X-Coexist-Trace"

# Milter protocol (libmilter/mfdef.h): the protocol steps the MTA honours.
NOHDRS, NOEOH, NR_HDR, NR_MAIL, NR_DATA = 0x20, 0x40, 0x80, 0x4000, 0x10000
FINAL_REPLIES = {b"a", b"c", b"d", b"r", b"t", b"y"}  # accept, continue, discard, reject, tempfail, replycode
HEADERS = [(b"From", b"<bench@example.org>"), (b"To", b"<rcpt@example>"), (b"Subject", b"milter bench"),
           (b"Date", b"Sat, 05 Dec 2026 12:00:00 +0000"), (b"Message-ID", b"<1.milter@bench.test>"),
           (b"MIME-Version", b"1.0"), (b"Content-Type", b"text/plain; charset=us-ascii")]


class WrongAnswer(RuntimeError):
    pass


def packet(command, data=b""):
    body = command + data
    return struct.pack(">I", len(body)) + body


class MilterConnection:
    """One MTA-side milter connection (milter8.c's part of the protocol), negotiated at once."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        # Postfix 3.7, milter_protocol = 6: every action and protocol step it supports.
        self.sock.sendall(packet(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)))
        reply = self.read()
        if reply[:1] != b"O" or len(reply) < 13:
            raise WrongAnswer(f"negotiation reply {reply[:16]!r}")
        _, _, self.steps = struct.unpack(">III", reply[1:13])

    def read(self):
        head = self.reader.read(4)
        if len(head) != 4:
            raise WrongAnswer("milter closed the connection")
        return self.reader.read(struct.unpack(">I", head)[0])

    def answer(self):
        """(final reply code, [modification packets before it])."""
        edits = []
        for _ in range(64):  # bounded: a message of ours gets at most 3 edits
            reply = self.read()
            if reply[:1] in FINAL_REPLIES:
                return reply[:1], edits
            edits.append(reply)
        raise WrongAnswer("more than 64 modifications")

    def close(self):
        self.sock.sendall(packet(b"Q"))
        self.sock.close()


def expected_edits(config, n, load):
    """The modification packets `config` must send at end of message for user n's message;
    None where it must accept the message at DATA instead (coexist-milter, outbound). The null
    milter that adds a header adds it to every message."""
    if config == "coexist" and load == "outbound":
        return None
    if config == "null-nr":
        return []
    edits = [b"h" + TRACE_HEADER + b"\0"]  # its value holds a date and the queue id: the name is checked
    if config == "coexist" and migrated(n):
        edits += [b"-" + f"<user{n}@{DOMAIN}>".encode() + b"\0",
                  b"2" + f"<user{n}@{ROUTING_DOMAIN}>".encode() + b"\0" +
                  f"ORCPT=rfc822;user{n}@{DOMAIN}".encode() + b"\0"]
    return edits


def check_edits(got, want, n, qid):
    """The edits in any order; a trace header by its name and the queue id in its value."""
    def same(g, w):
        if w.startswith(b"h"):
            return g.startswith(w) and b"; id=" + qid + b"; " in g
        return g == w
    if not (len(got) == len(want) and all(same(g, w) for g, w in zip(sorted(got), sorted(want)))):
        raise WrongAnswer(f"user{n}: edits {got!r}, expected {want!r}")


def session(port, config, load, users, paced, errors):
    """Sends one message per user of `users` over one connection, checking every answer."""
    try:
        conn = MilterConnection(port)
        domain = DOMAIN if load == "managed" else OUTBOUND_DOMAIN
        for k, n in enumerate(users):
            qid = f"4B{k:06X}".encode()
            macro = b"i\0" + qid + b"\0"
            conn.sock.sendall(packet(b"M", b"<bench@example.org>\0"))
            if not conn.steps & NR_MAIL:
                conn.answer()
            conn.sock.sendall(packet(b"D", b"R" + macro) + packet(b"R", f"<user{n}@{domain}>\0".encode()))
            code, _ = conn.answer()
            if code != b"c":
                raise WrongAnswer(f"user{n}@{domain}: RCPT answered {code!r}")
            conn.sock.sendall(packet(b"D", b"T" + macro) + packet(b"T"))
            want = expected_edits(config, n, load)
            if not conn.steps & NR_DATA:
                code, _ = conn.answer()
                if code == b"a" and want is None:  # done with this message: milter8_abort
                    conn.sock.sendall(packet(b"A"))
                    if paced:
                        time.sleep(PACE)
                    continue
                if code != b"c":
                    raise WrongAnswer(f"user{n}@{domain}: DATA answered {code!r}")
            if want is None:
                raise WrongAnswer(f"user{n}@{domain}: not accepted at DATA")
            if not conn.steps & NOHDRS:
                conn.sock.sendall(b"".join(packet(b"L", name + b"\0" + value + b"\0") for name, value in HEADERS))
                if not conn.steps & NR_HDR:
                    for _ in HEADERS:
                        conn.answer()
            if not conn.steps & NOEOH:
                conn.sock.sendall(packet(b"N"))
                conn.answer()
            conn.sock.sendall(packet(b"D", b"E" + macro) + packet(b"E"))
            code, edits = conn.answer()
            if code != b"c":
                raise WrongAnswer(f"user{n}@{domain}: end of message answered {code!r}")
            check_edits(edits, want, n, qid)
            if paced:
                time.sleep(PACE)
        conn.close()
    except Exception as e:  # any failure fails the run: a thread must not drop out silently
        errors.append(f"{config}, {load}: {type(e).__name__}: {e}")


def run(config, pid, port, load, paced, messages, first_user):
    """One run: `messages` messages over SESSIONS sessions; returns CPU seconds per message."""
    users = [((first_user + i) * 7919) % USERS for i in range(messages)]
    errors = []
    settle()
    before = cpu_seconds(pid)
    threads = [threading.Thread(target=session, args=(port, config, load, users[k::SESSIONS], paced, errors))
               for k in range(SESSIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise WrongAnswer(f"{len(errors)} session(s) failed, e.g. {errors[0]}")
    return (cpu_seconds(pid) - before) / messages


CONFIGS = ("coexist", "null-nr", "null-nr-header")
LOADS = (("managed", False), ("managed", True), ("outbound", False), ("outbound", True))


def load_key(load, paced):
    """A load's name in the results and the table: "managed", "managed, paced", ..."""
    return f"{load}, paced" if paced else load


def markdown(command, setup, results, elapsed):
    def us(seconds):
        return f"{seconds * 1e6:.0f}"
    lines = ["## Milter CPU without Postfix (`bench/milter_cpu.py`)", "",
             f"{setup['date']}, `{command}` ({elapsed / 60:.1f} min): {USERS:,} users (user i migrated iff "
             f"i % 10 == 0), {setup['messages']:,} messages a run over {SESSIONS} sessions, one recipient each, "
             f"{setup['rounds']} rounds, configurations interleaved; coexist {setup['revision']}.", "",
             "The bench plays Postfix's side of the milter protocol itself (no MTA on the cores): each figure "
             "is the milter process's own CPU (utime+stime, /proc/PID/stat) per message, median of the "
             "rounds; the ratio is the median of the per-round ratios to the null milter with the same "
             "negotiation. **managed**: recipients in contoso.com, a tenth rewritten (coexist-milter deletes "
             "the recipient and adds its routing address); **outbound**: recipients elsewhere, which "
             f"coexist-milter accepts at DATA. **paced**: each session pauses {PACE * 1000:.0f} ms after each "
             "message, so each command finds the milter idle, as through Postfix. Every answer checked "
             "(replies and edits). A reading aid for bench/relay.py's milter figures, not an issue target. "
             f"CPU time comes in 10 ms ticks: one tick is {0.01 / setup['messages'] * 1e6:.1f} us a message "
             "at this run's size.", "",
             "| load | coexist-milter us/msg | null milter us/msg | null milter + header us/msg | "
             "coexist / null | per round | coexist / null + header |",
             "|---|---|---|---|---|---|---|"]
    for load, paced in LOADS:
        key = load_key(load, paced)
        r = results[key]
        ratio, per_round = paired_ratio(r["coexist"], r["null-nr"])
        ratio_h, _ = paired_ratio(r["coexist"], r["null-nr-header"])
        lines.append(f"| {key} | {us(statistics.median(r['coexist']))} | {us(statistics.median(r['null-nr']))} | "
                     f"{us(statistics.median(r['null-nr-header']))} | {ratio:.3f} | "
                     f"{', '.join(f'{x:.2f}' for x in per_round)} | {ratio_h:.3f} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--quick", action="store_true", help="a smoke run, every answer checked")
    ap.add_argument("--markdown", help="write this benchmark's RESULTS.md section to FILE")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--messages", type=int)
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    messages = args.messages or (200 if args.quick else 3000)
    build = os.path.abspath(args.build)
    command = "sudo bench/milter_cpu.py " + " ".join(sys.argv[1:])
    started = time.monotonic()
    setup = {"rounds": rounds, "messages": messages,
             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             "revision": subprocess.run(["git", "-C", SOURCE, "describe", "--always", "--dirty"],
                                        capture_output=True, text=True).stdout.strip()}
    with Lab("bench-milter") as lab:
        os.chmod(lab.path(), 0o755)
        ports = {c: lab.free_port() for c in CONFIGS}
        ini = lab.path("coexist.ini")
        with open(ini, "w") as f:
            f.write(f"[map]\npath = {lab.path('map')}\n[routing]\nunknown_recipient = relay\n"
                    f"[domain {DOMAIN}]\nrouting_domain = {ROUTING_DOMAIN}\n"
                    f"[milter]\nsocket = inet:{ports['coexist']}@127.0.0.1\nuser = nobody\n")
        csv = lab.path("users.csv")
        write_users_csv(csv, USERS)
        tool = new_map(build, ini, lab.path("map"))
        subprocess.run([tool, "-c", ini, "import", csv], check=True, capture_output=True)
        null_milter = os.path.join(build, "bench", "bench_null_milter")
        pids = {
            "coexist": lab.spawn("coexist-milter", [os.path.join(build, "milter", "coexist-milter"), "-c", ini]).pid,
            "null-nr": lab.spawn("null-nr", [null_milter, "--socket", f"inet:{ports['null-nr']}@127.0.0.1",
                                             "--no-reply"]).pid,
            "null-nr-header": lab.spawn("null-nr-header", [
                null_milter, "--socket", f"inet:{ports['null-nr-header']}@127.0.0.1", "--no-reply",
                "--add-header"]).pid}
        for c in CONFIGS:
            wait_listening("127.0.0.1", ports[c], 20)
        steps = {c: MilterConnection(ports[c]).steps for c in CONFIGS}
        if len(set(steps.values())) != 1:
            raise WrongAnswer(f"the milters negotiate differently: {steps}")
        results = {load_key(load, paced): {c: [] for c in CONFIGS} for load, paced in LOADS}
        first_user = 0
        for r in range(rounds):
            for load, paced in LOADS:
                order = CONFIGS[r % 3:] + CONFIGS[:r % 3]  # each configuration first in turn
                for c in order:
                    cpu = run(c, pids[c], ports[c], load, paced, messages, first_user)
                    results[load_key(load, paced)][c].append(cpu)
                    print(f"round {r + 1}, {load_key(load, paced)}: {c} {cpu * 1e6:.0f} us/msg",
                          file=sys.stderr, flush=True)
                first_user += messages
    text = markdown(command, setup, results, time.monotonic() - started)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
