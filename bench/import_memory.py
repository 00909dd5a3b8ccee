#!/usr/bin/env python3
"""Map import against postmap, and the daemons' own memory (issue 13).

Part 1: `coexist-map import` of U users (a CSV like an admin's: address, state, batch; userN is
migrated iff N % 10 == 0, the shared rule of bench/) into a fresh map, against `postmap -c DIR
lmdb:` of the same users as a plain Postfix table (every address with its value: the routing
address for a migrated user, OK for the others), the floor of "load U keys into LMDB". Wall time
and peak RSS (/usr/bin/time's %M) of each, data.mdb's size; medians of interleaved rounds.

Part 2: each daemon's private memory (Anonymous and Private_Dirty of /proc/PID/smaps_rollup,
beside Rss) with a 1k and a U-user map, after a warm-up of lookups: coexist-policyd through its
socketmap and policy listeners (bench_load_client), coexist-milter through a private Postfix
with smtpd_milters (SMTP messages to a sink). Rss also counts the pages of data.mdb the daemon
has read, which are the kernel's shared page cache, not the daemon's own memory.

  sudo bench/import_memory.py --build DIR [--users 1000000] [--quick] [--markdown FILE]

Done-when (issue 13): import <= 2x postmap's time; import's peak RSS <= data.mdb + 32 MiB.
"""

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import time

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SOURCE, "tests", "harness"))
from coexist_harness import Lab, SmtpSession, tool_config_dir, wait_listening, wait_until  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_map import migrated, new_map  # noqa: E402

MIB = 1024 * 1024
TIME_TARGET = 2.0          # import wall time <= 2x postmap's
RSS_SLACK = 32 * MIB       # import peak RSS <= data.mdb + 32 MiB
SMALL_MAP = 1000
WARMUP_LOOKUPS = 20000     # per policyd protocol
WARMUP_MESSAGES = 200      # through the milter
COMMAND_TIMEOUT = 900      # seconds, for one import or postmap


def timed(lab, argv):
    """Runs argv under /usr/bin/time; returns (wall seconds, peak RSS bytes). Raises on failure.

    Not os.wait4 on a child of this script: Linux keeps ru_maxrss across execve, so a child forked
    from Python would report at least Python's own RSS. time(1) is a small C program."""
    out = lab.path("time.out")
    r = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", out] + argv, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=COMMAND_TIMEOUT)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    with open(out) as f:
        wall, rss_kib = f.read().split()[-2:]
    return float(wall), int(rss_kib) * 1024


def write_inputs(lab, users, tag):
    csv = lab.path(f"users-{tag}.csv")
    with open(csv, "w") as f:
        f.write("address,state,batch\n")
        f.writelines(f"user{i}@contoso.com,{'migrated' if migrated(i) else 'source'},wave{i % 20}\n"
                     for i in range(users))
    table = lab.path(f"virtual-{tag}")
    with open(table, "w") as f:
        f.writelines(f"user{i}@contoso.com {f'user{i}@o365.contoso.com' if migrated(i) else 'OK'}\n"
                     for i in range(users))
    return csv, table


def write_ini(lab, name, ports):
    ini = lab.path(f"{name}.ini")
    with open(ini, "w") as f:
        f.write(f"""[map]
path = {lab.path(name)}
[routing]
unknown_recipient = relay
[domain contoso.com]
routing_domain = o365.contoso.com
[milter]
socket = inet:{ports['milter']}@127.0.0.1
user = nobody
[policyd]
user = nobody
policy_socket = inet:{ports['policy']}@127.0.0.1
socketmap_socket = inet:{ports['socketmap']}@127.0.0.1
""")
    return ini


def fresh_map(lab, build, name, ports):
    ini = write_ini(lab, name, ports)
    subprocess.run(["rm", "-rf", lab.path(name)], check=True)
    return new_map(build, ini, lab.path(name)), ini


def measure_import(lab, build, csv, table, rounds):
    """Interleaved rounds of import and postmap; returns lists of (seconds, rss) and the sizes."""
    imports, postmaps = [], []
    tools = tool_config_dir(lab.path())
    ports = {k: lab.free_port() for k in ("milter", "policy", "socketmap")}  # unused: no daemon here
    for r in range(rounds):
        tool, ini = fresh_map(lab, build, "import-map", ports)
        imports.append(timed(lab, [tool, "-c", ini, "import", csv]))
        if os.path.exists(table + ".lmdb"):
            os.unlink(table + ".lmdb")
        postmaps.append(timed(lab, ["postmap", "-c", tools, f"lmdb:{table}"]))
        print(f"round {r + 1}: import {imports[-1][0]:.2f} s, {imports[-1][1] / MIB:.0f} MiB; "
              f"postmap {postmaps[-1][0]:.2f} s, {postmaps[-1][1] / MIB:.0f} MiB", file=sys.stderr)
    data_mdb = os.stat(lab.path("import-map", "data.mdb")).st_size
    postmap_lmdb = os.stat(table + ".lmdb").st_size
    return imports, postmaps, data_mdb, postmap_lmdb


def smaps_rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def warm_policyd(build, ports, users):
    for protocol in ("socketmap", "policy"):
        argv = [os.path.join(build, "bench", "bench_load_client"), f"--{protocol}",
                f"inet:127.0.0.1:{ports[protocol]}", "--connections", "8", "--requests", str(WARMUP_LOOKUPS),
                "--users", str(users), "--check", "--timeout", "60"]
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")


def warm_milter(lab, name, ports, users):
    """WARMUP_MESSAGES messages through a private Postfix with the milter; checks the routing."""
    sink_old, sink_new = lab.add_sink(f"{name}-old"), lab.add_sink(f"{name}-new")
    pf = lab.add_postfix(f"{name}-pf", routes={"contoso.com": sink_old, "o365.contoso.com": sink_new},
                         main_cf={"smtpd_milters": f"inet:127.0.0.1:{ports['milter']}"})
    step = max(1, users // WARMUP_MESSAGES)
    rcpts = [f"user{(k * step) % users}@contoso.com" for k in range(WARMUP_MESSAGES)]
    with SmtpSession("127.0.0.1", pf.smtpd_port, timeout=60) as s:
        for rcpt in rcpts:
            r = s.send("bench@example.org", [rcpt], body="x")
            if not r.queued:
                raise RuntimeError(f"milter warm-up: {rcpt} refused: {r}")
    wait_until(lambda: pf.log().count("status=sent") >= len(rcpts), 300, "milter warm-up deliveries",
               interval=0.2, on_timeout=pf.log_tail)
    want_new = sum(1 for r in rcpts if migrated(int(r[4:r.index("@")])))
    got_new = len(sink_new.recipients())
    if got_new != want_new:
        raise RuntimeError(f"milter warm-up: {got_new} messages reached the new system, expected {want_new}")
    pf.stop()


def measure_daemons(lab, build, users):
    """{(daemon, users): smaps_rollup} for a SMALL_MAP and a `users` map."""
    out = {}
    for size in (SMALL_MAP, users):
        name = f"map{size}"
        ports = {k: lab.free_port() for k in ("milter", "policy", "socketmap")}
        tool, ini = fresh_map(lab, build, name, ports)
        csv, _ = write_inputs(lab, size, name)
        subprocess.run([tool, "-c", ini, "import", csv], check=True, capture_output=True,
                       timeout=COMMAND_TIMEOUT)
        policyd = lab.spawn(f"policyd-{size}", [os.path.join(build, "policyd", "coexist-policyd"), "-c", ini])
        milter = lab.spawn(f"milter-{size}", [os.path.join(build, "milter", "coexist-milter"), "-c", ini])
        for p in ports.values():
            wait_listening("127.0.0.1", p, 20)
        warm_policyd(build, ports, size)
        warm_milter(lab, name, ports, size)
        out[("coexist-policyd", size)] = smaps_rollup(policyd.pid)
        out[("coexist-milter", size)] = smaps_rollup(milter.pid)
        policyd.stop()
        milter.stop()
        subprocess.run(["rm", "-rf", lab.path(name)], check=True)
    return out


def git_revision():
    r = subprocess.run(["git", "-C", SOURCE, "describe", "--always", "--dirty"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def mib(n):
    return f"{n / MIB:,.1f}"


def markdown(args, command, imports, postmaps, data_mdb, postmap_lmdb, daemons, load_start, elapsed):
    imp_t = statistics.median(t for t, _ in imports)
    imp_rss = max(m for _, m in imports)
    pm_t = statistics.median(t for t, _ in postmaps)
    pm_rss = max(m for _, m in postmaps)
    time_ok = imp_t <= TIME_TARGET * pm_t
    rss_ok = imp_rss <= data_mdb + RSS_SLACK
    lines = [
        "## Map import against postmap, daemon memory (`bench/import_memory.py`)",
        "",
        f"{datetime.date.today().isoformat()}, `{command}`, coexist {git_revision()}; {os.cpu_count()} cores, "
        f"load average {load_start} at the start and {load_average()} at the end; the whole run took "
        f"{elapsed:.0f} s.",
        "",
        f"{args.users:,} users (CSV `address,state,batch`, every tenth migrated) imported into a fresh map "
        f"with `coexist-map import`, against `postmap -c DIR lmdb:` of the same {args.users:,} addresses as a "
        "Postfix table (routing address for the migrated, `OK` for the others). Medians of "
        f"{len(imports)} interleaved round(s); wall time and peak RSS from `/usr/bin/time -f %M` (RSS: the largest of the rounds).",
        "",
        "| step | wall s (median) | runs | peak RSS MiB | file MiB | target | |",
        "|---|---|---|---|---|---|---|",
        f"| `coexist-map import` | {imp_t:.2f} | {', '.join(f'{t:.2f}' for t, _ in imports)} | {mib(imp_rss)} | "
        f"{mib(data_mdb)} (data.mdb) | time <= 2x postmap ({imp_t / pm_t:.2f}x); RSS <= data.mdb + 32 MiB "
        f"({mib(data_mdb + RSS_SLACK)}) | time {'met' if time_ok else 'MISSED'}, "
        f"RSS {'met' if rss_ok else 'MISSED'} |",
        f"| `postmap lmdb:` (the floor) | {pm_t:.2f} | {', '.join(f'{t:.2f}' for t, _ in postmaps)} | "
        f"{mib(pm_rss)} | {mib(postmap_lmdb)} (.lmdb) | | |",
        "",
        "Each daemon's memory after a warm-up (coexist-policyd: "
        f"{WARMUP_LOOKUPS:,} socketmap and {WARMUP_LOOKUPS:,} policy lookups over 8 connections; "
        f"coexist-milter: {WARMUP_MESSAGES} messages through a private Postfix), from "
        "/proc/PID/smaps_rollup. Anonymous and Private_Dirty are the daemon's own memory; Rss also "
        "counts the pages of data.mdb it has read, which are the kernel's page cache, shared with "
        "every other reader of the map and not the daemon's to free.",
        "",
        "| daemon | map users | Anonymous MiB | Private_Dirty MiB | Rss MiB | Pss MiB |",
        "|---|---|---|---|---|---|",
    ]
    for (daemon, size), s in sorted(daemons.items()):
        lines.append(f"| {daemon} | {size:,} | {mib(s.get('Anonymous', 0))} | {mib(s.get('Private_Dirty', 0))} | "
                     f"{mib(s.get('Rss', 0))} | {mib(s.get('Pss', 0))} |")
    lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--users", type=int, default=None, help="users (default 1000000; 20000 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="a smoke run of under 2 minutes")
    ap.add_argument("--markdown", help="write this benchmark's section of RESULTS.md to FILE")
    args = ap.parse_args()
    args.users = args.users or (20000 if args.quick else 1000000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.build = os.path.abspath(args.build)
    command = "sudo bench/import_memory.py " + " ".join(sys.argv[1:])
    started = time.monotonic()
    load_start = load_average()
    with Lab("bench-import") as lab:
        csv, table = write_inputs(lab, args.users, "import")
        imports, postmaps, data_mdb, postmap_lmdb = measure_import(lab, args.build, csv, table, args.rounds)
        os.unlink(csv)
        os.unlink(table)
        daemons = measure_daemons(lab, args.build, args.users)
        text = markdown(args, command, imports, postmaps, data_mdb, postmap_lmdb, daemons, load_start,
                        time.monotonic() - started)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench: run as root (private Postfix instances, daemons that drop to nobody)")
    main()
