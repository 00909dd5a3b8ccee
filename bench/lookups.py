#!/usr/bin/env python3
"""Lookup servers without Postfix: coexist-policyd against the null lookup server (issue 13).

Builds a map of U users with `coexist-map import` (userN@contoso.com, migrated iff N % 10 == 0,
the shared rule of bench/), runs coexist-policyd (socketmap and policy listeners, `user =
nobody`) and bench_null_lookup_server (the same protocols and answers from the key alone: the
floor), and drives each with bench_load_client at 1, 8 and 64 connections, one request in flight
per connection as Postfix's clients do. Every answer is checked; one wrong answer fails the run.
Before anything is timed, coexist-policyd must tell a user of its map from one who is not
(check_reads_map): the timed policy requests are all answered DUNNO, as the null server does.
Rounds are interleaved (each round runs every case on both servers, back to back, the null
server first in odd rounds and second in even ones) and the tables give medians; a ratio is the
median of the per-round ratios, as the two servers of one round meet the same phase of the VM.
Raw mdb_get of the same keys (bench_mdb_get) is given beside them: LMDB's own floor. Last, a
newcomer's wait for one socketmap answer while 300 clients pipeline 20,000 lookups each without
reading (bench/flood.py), for both servers: not a speed target, the bound on one turn's work.

The servers are pinned to one core and the client to another (taskset), so they do not take
turns on one core; the client's CPU share is reported to show it is not the bottleneck.

  sudo bench/lookups.py --build DIR [--users 1000000] [--quick] [--markdown FILE]

Done-when (issue 13): coexist >= 0.8x the null server in req/s at every connection count, and
p99 at 64 connections <= 1.25x the null server's.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SOURCE, "tests", "harness"))
from coexist_harness import Lab, wait_listening  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_map import new_map, write_users_csv  # noqa: E402
import flood  # noqa: E402
from machine import settle  # noqa: E402
from rounds import paired_ratio  # noqa: E402

CONNECTIONS = (1, 8, 64)
PROTOCOLS = ("socketmap", "policy")
SERVERS = ("null", "coexist")
RPS_TARGET = 0.8      # coexist req/s >= 0.8x null
P99_TARGET = 1.25     # coexist p99 at 64 connections <= 1.25x null
CLIENT_TIMEOUT = 60   # seconds without an answer before the client gives up


def pinning():
    """(server prefix, client prefix): taskset to cores 0 and 1 when there are two cores."""
    if os.cpu_count() and os.cpu_count() >= 2 and subprocess.run(["which", "taskset"],
                                                                   capture_output=True).returncode == 0:
        return ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    return [], []


def write_config(lab, ports):
    ini = lab.path("coexist.ini")
    with open(ini, "w") as f:
        f.write(f"""[map]
path = {lab.path('map')}
[routing]
unknown_recipient = relay
[domain contoso.com]
routing_domain = o365.contoso.com
[domain fabrikam.com]
routing_domain = fabrikam.onmicrosoft.com
unknown_recipient = reject
[policyd]
user = nobody
policy_socket = inet:{ports['policy']}@127.0.0.1
socketmap_socket = inet:{ports['socketmap']}@127.0.0.1
""")
    return ini


def build_map(lab, build, ini, users):
    """Imports the users; returns the import's wall time in seconds."""
    csv = lab.path("users.csv")
    write_users_csv(csv, users)
    os.chmod(lab.path(), 0o755)  # the daemon runs as nobody
    tool = new_map(build, ini, lab.path("map"))
    start = time.monotonic()
    subprocess.run([tool, "-c", ini, "import", csv], check=True, capture_output=True)
    elapsed = time.monotonic() - start
    os.unlink(csv)
    return elapsed


# Answers that only a server that reads the map can give (check_reads_map): every timed request
# is for a known contoso.com user, which the policy service answers DUNNO whatever its state.
KNOWN, UNKNOWN = "anna@fabrikam.com", "ghost@fabrikam.com"  # fabrikam.com: unknown_recipient = reject


def add_known_user(build, ini):
    tool = os.path.join(build, "maps", "coexist-map")
    subprocess.run([tool, "-c", ini, "set", KNOWN, "migrated"], check=True, capture_output=True)


def ask(port, request, complete):
    """flood.ask with 10 s a read; the reply as text."""
    return flood.ask(port, request, complete, 10).decode("ascii", "replace")


def check_reads_map(policy_port, socketmap_port):
    """coexist-policyd must tell a user of its map from one who is not, before anything is timed:
    the timed policy requests all get DUNNO, which a server that never read the map would give too.
    Raises RuntimeError on any other answer."""
    def policy(rcpt):
        return ask(policy_port, f"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient={rcpt}\n\n".encode(),
                   lambda r: r.endswith(b"\n\n"))

    def netstring(text):  # as the answer is compared: text
        return flood.netstring(text).decode()

    def socketmap(key):
        return ask(socketmap_port, flood.netstring(f"virtual {key}"), lambda r: r.endswith(b","))
    answers = {("policy", KNOWN): policy(KNOWN), ("policy", UNKNOWN): policy(UNKNOWN),
               ("socketmap", KNOWN): socketmap(KNOWN), ("socketmap", UNKNOWN): socketmap(UNKNOWN)}
    wanted = {("policy", KNOWN): "action=DUNNO\n\n", ("policy", UNKNOWN): "action=550 ",
              ("socketmap", KNOWN): netstring("OK anna@fabrikam.onmicrosoft.com"),
              ("socketmap", UNKNOWN): netstring("NOTFOUND ")}
    wrong = {k: v for k, v in answers.items() if not v.startswith(wanted[k])}
    if wrong:
        raise RuntimeError(f"coexist-policyd does not answer from its map: {wrong} (wanted {wanted})")


def run_client(build, client_pin, protocol, address, connections, requests, users):
    argv = client_pin + [os.path.join(build, "bench", "bench_load_client"), f"--{protocol}", address,
                         "--connections", str(connections), "--requests", str(requests),
                         "--users", str(users), "--check", "--timeout", str(CLIENT_TIMEOUT)]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def run_mdb_get(build, client_pin, mapdir, lookups, users):
    argv = client_pin + [os.path.join(build, "bench", "bench_mdb_get"), mapdir, str(lookups), "--users", str(users)]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return json.loads(r.stdout)


def git_revision():
    r = subprocess.run(["git", "-C", SOURCE, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def coexist_over_null(results, protocol, connections, key):
    """(median, per-round list) of coexist's figure over the null server's in the same round."""
    return paired_ratio([r[key] for r in results[(protocol, connections, "coexist")]],
                        [r[key] for r in results[(protocol, connections, "null")]])


def flood_summary(waits, clients, requests):
    """The flood paragraph of the results."""
    def figures(server):
        w = waits[server]
        return f"median {statistics.median(w) * 1000:,.0f} ms, longest {max(w) * 1000:,.0f} ms"
    return (f"A newcomer's wait for one socketmap answer while {clients} other clients each pipeline "
            f"{requests:,} lookups and read no reply (`bench/flood.py`, {len(waits['coexist'])} newcomers "
            f"one after another, every answer checked): coexist-policyd {figures('coexist')}; the null "
            f"server {figures('null')}. Not a target. The newcomer waits for one turn of the loop, "
            "which serves every flooding client's next read: at most 4 KiB each in coexist-policyd, "
            "hundreds of real lookups (a route() each, and a log line for each rewrite); the null "
            "server answers from the key alone, so even its 64 KiB reads make a short turn.")


def markdown(args, command, results, mdb, import_seconds, load_start, elapsed, pinned, flood_text):
    today = datetime.date.today().isoformat()
    lines = [
        "## Lookup servers without Postfix (`bench/lookups.py`)",
        "",
        f"{today}, `{command}`, coexist {git_revision()}; {os.cpu_count()} cores, load average "
        f"{load_start} at the start and {load_average()} at the end; the whole run took {elapsed:.0f} s.",
        "",
        f"{args.users:,} users in a map made by `coexist-map import` ({import_seconds:.1f} s), every tenth "
        "migrated. `coexist-policyd` (socketmap and policy listeners on loopback TCP, `user = nobody`, "
        "logging to syslog as in production, facility mail) against `bench_null_lookup_server` (the same "
        "protocols and byte-for-byte the same answers, from the key alone: the floor). "
        f"`bench_load_client`: C connections with one request in flight each, {args.requests:,} "
        "requests per run striding over every user, every answer checked; a `virtual` socketmap query "
        "or a full RCPT policy request as Postfix 3.7's smtpd sends it. "
        + ("Servers pinned to core 0, the client to core 1 (`taskset`). " if pinned else
           "Not pinned (fewer than 2 cores or no taskset). ")
        + f"Medians of {args.rounds} interleaved round(s), each run after the machine settled (sync, "
        "idle cores); a ratio is the median of the per-round ratios (both servers of a round run back "
        "to back, in alternating order), given to 3 decimals, as it is judged, with the per-round "
        "ratios beside it (the p99 ones at 64 connections under the table). The medians of the "
        "figures beside it need not divide to the ratio: they may come from different rounds. "
        "p50/p99 are per-request latencies, from "
        "just before the send to the return of the client's `epoll_wait` that reported the answer "
        "whole (since 2026-12-06; before, to the moment the client's loop reached that connection, "
        "which added the client's handling of every other answer of the same wake-up: Postfix's "
        "clients are separate processes, one connection each).",
        "",
        "| protocol | conns | null req/s | coexist req/s | ratio (>= 0.8) | per round | null p50 / p99 us "
        "| coexist p50 / p99 us | p99 ratio | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    client_cpu = 0.0
    p99_rounds = []
    for protocol in PROTOCOLS:
        for c in CONNECTIONS:
            med = {}
            for server in SERVERS:
                runs = results[(protocol, c, server)]
                med[server] = {k: statistics.median(r[k] for r in runs)
                               for k in ("requests_per_second", "p50_us", "p99_us")}
                client_cpu = max(client_cpu, max(r["cpu_share"] for r in runs))
            ratio, rps_rounds = coexist_over_null(results, protocol, c, "requests_per_second")
            p99_ratio, per_round = coexist_over_null(results, protocol, c, "p99_us")
            if c == 64:
                p99_rounds.append(f"{protocol} {', '.join(f'{x:.2f}' for x in per_round)}")
            met = ratio >= RPS_TARGET and (c != 64 or p99_ratio <= P99_TARGET)
            target = "req/s" + (", p99 <= 1.25x" if c == 64 else "")
            lines.append(
                f"| {protocol} | {c} | {med['null']['requests_per_second']:,.0f} | "
                f"{med['coexist']['requests_per_second']:,.0f} | {ratio:.3f} | "
                f"{', '.join(f'{x:.2f}' for x in rps_rounds)} | "
                f"{med['null']['p50_us']:.0f} / {med['null']['p99_us']:.0f} | "
                f"{med['coexist']['p50_us']:.0f} / {med['coexist']['p99_us']:.0f} | {p99_ratio:.3f} | "
                f"{target}: {'met' if met else 'MISSED'} |")
    mdb_med = statistics.median(r["ops_per_second"] for r in mdb)
    lines += [
        "",
        f"p99 ratio at 64 connections, round by round: {'; '.join(p99_rounds)}.",
        "",
        f"Raw `mdb_get` of the same keys (`bench_mdb_get`, one read transaction reset and renewed per "
        f"lookup, no server, no protocol): {mdb_med:,.0f} lookups/s (median of "
        f"{', '.join(format(r['ops_per_second'], ',.0f') for r in mdb)}).",
        f"The load client's CPU share peaked at {client_cpu:.0%} of its core"
        + (" (it may be the bottleneck there)." if client_cpu > 0.9 else ", so it is not the bottleneck."),
        "",
        flood_text,
        "",
    ]
    if not os.path.exists("/dev/log"):
        # Seen with strace -c: socket(), a failed connect() and close() per logged decision. A
        # production host has a syslog socket: one send per line instead (bench/run provides one).
        lines[-1:-1] = [
            "No /dev/log on this machine: coexist-policyd's syslog() tries to reconnect for every "
            "decision it logs (three failed system calls per request that a host with a syslog "
            "daemon does not pay); `bench/run` provides a /dev/log sink for this reason."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--users", type=int, default=None, help="map size (default 1000000; 10000 with --quick)")
    ap.add_argument("--requests", type=int, default=None, help="requests per run (default 100000; 5000 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="a smoke run of under 2 minutes, every answer checked")
    ap.add_argument("--markdown", help="write this benchmark's section of RESULTS.md to FILE")
    args = ap.parse_args()
    args.users = args.users or (10000 if args.quick else 1000000)
    args.requests = args.requests or (5000 if args.quick else 100000)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.build = os.path.abspath(args.build)
    command = "sudo bench/lookups.py " + " ".join(a for a in sys.argv[1:])
    started = time.monotonic()
    load_start = load_average()
    server_pin, client_pin = pinning()

    with Lab("bench-lookups") as lab:
        ports = {k: lab.free_port() for k in ("policy", "socketmap", "null_policy", "null_socketmap")}
        ini = write_config(lab, ports)
        import_seconds = build_map(lab, args.build, ini, args.users)
        add_known_user(args.build, ini)
        print(f"map: {args.users} users imported in {import_seconds:.1f} s", file=sys.stderr)
        policyd = lab.spawn("policyd", server_pin + [os.path.join(args.build, "policyd", "coexist-policyd"),
                                                     "-c", ini])
        lab.spawn("null", server_pin + [os.path.join(args.build, "bench", "bench_null_lookup_server"),
                                        "--socketmap", f"inet:127.0.0.1:{ports['null_socketmap']}",
                                        "--policy", f"inet:127.0.0.1:{ports['null_policy']}"])
        for p in ports.values():
            wait_listening("127.0.0.1", p, 10)
        address = {
            ("coexist", "socketmap"): f"inet:127.0.0.1:{ports['socketmap']}",
            ("coexist", "policy"): f"inet:127.0.0.1:{ports['policy']}",
            ("null", "socketmap"): f"inet:127.0.0.1:{ports['null_socketmap']}",
            ("null", "policy"): f"inet:127.0.0.1:{ports['null_policy']}",
        }
        check_reads_map(ports["policy"], ports["socketmap"])
        # Warm-up: every page of the map in the page cache, both servers' code paths once.
        run_mdb_get(args.build, client_pin, lab.path("map"), args.users, args.users)
        for (server, protocol), addr in address.items():
            run_client(args.build, client_pin, protocol, addr, 8, min(args.requests, 10000), args.users)
        results = {(p, c, s): [] for p in PROTOCOLS for c in CONNECTIONS for s in SERVERS}
        mdb = []
        for r in range(args.rounds):
            mdb.append(run_mdb_get(args.build, client_pin, lab.path("map"), args.requests, args.users))
            for c in CONNECTIONS:
                for protocol in PROTOCOLS:
                    for server in (SERVERS if r % 2 == 0 else SERVERS[::-1]):
                        settle()  # the relay benchmark, or the last run, off the cores first
                        res = run_client(args.build, client_pin, protocol, address[(server, protocol)], c,
                                         args.requests, args.users)
                        results[(protocol, c, server)].append(res)
                        print(f"round {r + 1}: {protocol} c={c} {server}: {res['requests_per_second']:.0f} req/s, "
                              f"p50 {res['p50_us']:.0f} us, p99 {res['p99_us']:.0f} us, "
                              f"client cpu {res['cpu_share']:.0%}", file=sys.stderr)
                # The daemon logs each decision: keep its log from filling the disk.
                os.truncate(policyd.log_path, 0)
        # The flood last: its backlog must not slow the figures above.
        clients, requests = (100, 5000) if args.quick else (flood.FLOOD_CLIENTS, flood.FLOOD_REQUESTS)
        waits = {}
        for server, key in (("null", "null_socketmap"), ("coexist", "socketmap")):
            waits[server] = flood.newcomer_waits(ports[key], clients, requests)
            print(f"flood: {server}: newcomer waits {', '.join(f'{w:.3f}' for w in waits[server])} s",
                  file=sys.stderr)
            flood.wait_until_served_promptly(ports[key])
        os.truncate(policyd.log_path, 0)
        if not policyd.alive():
            raise RuntimeError("coexist-policyd exited during the run")
        elapsed = time.monotonic() - started
        text = markdown(args, command, results, mdb, import_seconds, load_start, elapsed,
                        bool(server_pin), flood_summary(waits, clients, requests))
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench: run as root (the daemon drops to nobody)")
    main()
