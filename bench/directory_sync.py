#!/usr/bin/env python3
"""Directory sync: coexist-map against the floor of the same job, a private slapd on loopback.

  sudo python3 bench/directory_sync.py BUILD_DIR [--users 100000,1000000] [--changes 100]
                                       [--rounds 3] [--latency-users N] [--results bench/RESULTS.md]
                                       [--commit REV]

a. Initial `coexist-map sync` of N directory users into an empty map: wall time and peak RSS,
   beside the floor measured in the same run: paged `ldapsearch -E pr=500/noprompt` of the same
   entries and attributes (the two group entries, then the people), LDIF to /dev/null, bound as
   the same service account. Rounds are interleaved (floor, sync, floor, sync, ...), each sync
   into a fresh map; medians. Also a re-sync of the unchanged map (0 changes) and the map's
   data.mdb size. Targets: sync within 2x the ldapsearch; peak RSS within data.mdb + 64 MiB.
   Every sync must report N users, all added, and `route` must agree on sample users: a fast
   wrong answer is not a result.

b. Change-to-route latency: a member added to (then removed from) cn=migrated on the provider,
   one change at a time, --changes of them; two relays run `coexist-map sync --follow`, one on
   the provider, one on a consumer slapd replicating it (syncrepl refreshAndPersist). A change
   counts as visible to a relay when `coexist-map route USER` run in a tight loop (2 ms sleep;
   the loop's resolution is measured and printed) gives the new action. The floor: a plain
   `ldapsearch -E sync=rp` client on the group, on the provider and on the consumer, timestamped
   when its output shows the changed entry: what any RFC 4533 follower could see at best.
   Changes are written through one long-running ldapmodify (stdin), so t0 is the moment the
   record is handed to it, not a process start. Targets: provider-following relay p99 within
   250 ms; consumer-following relay p99 within the consumer floor's p99 + 250 ms.

The directory (write_directory_ldif): users user0000001.., every 3rd migrated (group member),
every 7th of the rest dual, every 10th with an alias in mailLocalAddress, every 50th with an
explicit mailRoutingAddress; so the migrated group of 100k users has 33k members and every
change to it ships the whole entry to each follower, as on a real site.

Prints the markdown section; with --results FILE it also replaces (or appends) the
"## Directory sync (`bench/directory_sync.py`)" section of FILE, up to the next "## " heading
(the analysis written by hand below it stays).
"""

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SOURCE, "tests", "harness"))
from coexist_harness.slapd import (Slapd, group_dn, ldap_tool_env, missing_requirements,  # noqa: E402
                                   people_dn, user_uid, write_directory_ldif)

MIB = 1 << 20
BASE = "ou=people,dc=contoso,dc=com"
FILTER = "(objectClass=inetOrgPerson)"
ATTRS = ["mail", "mailLocalAddress", "mailRoutingAddress"]
GROUPS = [group_dn("migrated"), group_dn("cutover")]
POLL_SLEEP = 0.002


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- the directory -------------------------------------------------------------------------

def is_migrated(i):
    return i % 3 == 1


def is_dual(i):
    return not is_migrated(i) and i % 7 == 0


def write_ldif(path, n):
    aliases = {user_uid(i): [f"alias{i}@contoso.com"] for i in range(10, n + 1, 10)}
    targets = {user_uid(i): f"{user_uid(i)}@routing.contoso.com" for i in range(50, n + 1, 50)}
    return write_directory_ldif(path, n,
                                migrated=(user_uid(i) for i in range(1, n + 1) if is_migrated(i)),
                                dual=(user_uid(i) for i in range(1, n + 1) if is_dual(i)),
                                targets=targets, aliases=aliases)


def expected_counts(n):
    return {"users": n, "aliases": n // 10}


# ---- processes -----------------------------------------------------------------------------

def measured(argv, env=None, capture=False, timeout=7200):
    """(seconds, peak RSS bytes, returncode, stdout or None, stderr): the child's own rusage via
    os.wait4 (resource.getrusage(RUSAGE_CHILDREN) would be the max over every child so far)."""
    started = time.monotonic()
    out_path = tempfile.mktemp(prefix="coexist-bench-out-")
    err_path = tempfile.mktemp(prefix="coexist-bench-err-")
    with open(err_path, "wb") as err, open(out_path if capture else os.devnull, "wb") as out:
        pid = os.posix_spawn(argv[0] if os.path.isabs(argv[0]) else shutil.which(argv[0]), argv,
                             env if env is not None else os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                                           (os.POSIX_SPAWN_DUP2, err.fileno(), 2)])
        deadline = started + timeout
        while True:
            wpid, status, usage = os.wait4(pid, os.WNOHANG)
            if wpid:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.wait4(pid, 0)
                raise RuntimeError(f"{' '.join(argv)} took more than {timeout} s")
            time.sleep(0.005)
    took = time.monotonic() - started
    with open(err_path, errors="replace") as f:
        err_text = f.read()
    out_text = None
    if capture:
        with open(out_path, errors="replace") as f:
            out_text = f.read()
    for p in (out_path, err_path):
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
    global last_cpu
    last_cpu = usage.ru_utime + usage.ru_stime
    return took, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status), out_text, err_text


last_cpu = 0.0  # user + system seconds of the last measured() child


# ---- coexist-map ---------------------------------------------------------------------------

class Relay:
    """One map and its INI, fed from `uri`."""

    def __init__(self, build, directory, name, ldap, uri):
        self.tool = os.path.join(build, "maps", "coexist-map")
        self.dir = os.path.join(directory, name)
        os.makedirs(self.dir, exist_ok=True)
        self.secret = os.path.join(self.dir, "secret")
        with open(self.secret, "w") as f:
            f.write(ldap.service_password)  # no newline: ldapsearch -y takes the file as it is
        os.chmod(self.secret, 0o600)
        self.map = os.path.join(self.dir, "map")
        self.ini = os.path.join(self.dir, "coexist.ini")
        with open(self.ini, "w") as f:
            f.write(f"""[map]
path = {self.map}
[domain contoso.com]
routing_domain = o365.contoso.com
[directory]
uri = {uri}
bind_dn = {ldap.service_dn}
bind_password_file = {self.secret}
base = {BASE}
alias_attributes = mailLocalAddress
target_attribute = mailRoutingAddress
migrated_group = {GROUPS[0]}
dual_group = {GROUPS[1]}
max_removals = 30%
""")
        self.follower = None
        self.follower_log = os.path.join(self.dir, "follow.log")

    def cmd(self, *args):
        return [self.tool, "-c", self.ini, *args]

    def run(self, *args, check=True, timeout=600):
        r = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"coexist-map {' '.join(args)}: exit {r.returncode}: {r.stderr}{r.stdout}")
        return r

    def fresh(self):
        shutil.rmtree(self.map, ignore_errors=True)
        self.run("init")

    def route(self, address):
        return self.run("route", address).stdout.split()

    def data_mdb(self):
        return os.path.getsize(os.path.join(self.map, "data.mdb"))

    def follow(self):
        self.follower = subprocess.Popen(self.cmd("sync", "--follow"), stdout=subprocess.DEVNULL,
                                         stderr=open(self.follower_log, "wb"), stdin=subprocess.DEVNULL)

    def follower_text(self):
        with open(self.follower_log, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.follower is not None and self.follower.poll() is None:
            self.follower.terminate()
            try:
                self.follower.wait(30)
            except subprocess.TimeoutExpired:
                self.follower.kill()
                self.follower.wait(30)
        self.follower = None


SYNC_LINE = re.compile(r"synced from \S+: (\d+) entries, (\d+) users: (\d+) added, (\d+) changed, "
                       r"(\d+) removed, (\d+) aliases added")


def check_routes(relay, n):
    """Sample users of every kind route as the directory says."""
    samples = [i for i in (1, 3, 7, 10, 50, n // 2, n) if 1 <= i <= n]
    for i in samples:
        addr = f"{user_uid(i)}@contoso.com"
        got = relay.route(addr)
        action = got[1] if len(got) > 1 else "?"
        want = "dual" if is_dual(i) else "rewrite" if is_migrated(i) else "relay"
        if action != want:
            raise RuntimeError(f"route {addr}: {' '.join(got)}, expected {want}")


# ---- a. initial sync -----------------------------------------------------------------------

def floor_search(ldap, secret):
    """The same reads as a sync: the two groups (base) and the people (paged), LDIF to /dev/null.
    Returns (seconds, peak RSS, entries)."""
    common = ["ldapsearch", "-x", "-H", ldap.uri, "-D", ldap.service_dn, "-y", secret, "-LLL",
              "-o", "ldif-wrap=no", "-o", "nettimeout=30"]
    global floor_cpu
    total, rss, floor_cpu = 0.0, 0, 0.0
    for g in GROUPS:
        t, m, rc, _, err = measured(common + ["-b", g, "-s", "base", "member", "uniqueMember"],
                                    env=ldap_tool_env())
        if rc != 0:
            raise RuntimeError(f"ldapsearch {g}: {rc}: {err}")
        total, rss, floor_cpu = total + t, max(rss, m), floor_cpu + last_cpu
    t, m, rc, _, err = measured(common + ["-E", "pr=500/noprompt", "-b", BASE, FILTER, *ATTRS],
                                env=ldap_tool_env())
    if rc != 0:
        raise RuntimeError(f"ldapsearch {BASE}: {rc}: {err}")
    floor_cpu += last_cpu
    return total + t, max(rss, m), floor_cpu


def sync_once(relay, n):
    relay.fresh()
    t, m, rc, out, err = measured(relay.cmd("sync"), capture=True)
    if rc != 0:
        raise RuntimeError(f"coexist-map sync: exit {rc}: {err}{out}")
    got = SYNC_LINE.search(out)
    if not got or int(got.group(2)) != n or int(got.group(3)) != n:
        raise RuntimeError(f"coexist-map sync of {n} users said: {out.strip()}")
    return t, m, out.strip().splitlines()[-1], last_cpu


def bench_initial(ldap, relay, n, rounds):
    log(f"{n} users: warm-up read")
    floor_search(ldap, relay.secret)
    floors, syncs = [], []
    for r in range(rounds):
        floors.append(floor_search(ldap, relay.secret))
        log(f"{n} users: round {r + 1}: ldapsearch {floors[-1][0]:.2f} s ({floors[-1][2]:.2f} s CPU), {floors[-1][1] / MIB:.0f} MiB")
        t, m, line, cpu = sync_once(relay, n)
        syncs.append((t, m, cpu))
        log(f"{n} users: round {r + 1}: sync {t:.2f} s ({cpu:.2f} s CPU), {m / MIB:.0f} MiB: {line}")
    check_routes(relay, n)
    digest = relay.run("digest").stdout.strip()
    want = expected_counts(n)
    if f"users={want['users']}" not in digest or f"aliases={want['aliases']}" not in digest:
        raise RuntimeError(f"digest after syncing {n} users: {digest}")
    t, m, rc, out, err = measured(relay.cmd("sync"), capture=True)
    if rc != 0 or " 0 added, 0 changed, 0 removed" not in out:
        raise RuntimeError(f"re-sync: {rc}: {err}{out}")
    log(f"{n} users: re-sync {t:.2f} s, {m / MIB:.0f} MiB")
    stats = relay.run("stats").stdout
    return {
        "n": n, "rounds": rounds,
        "floor_s": [f[0] for f in floors], "floor_rss": max(f[1] for f in floors),
        "floor_cpu": statistics.median(f[2] for f in floors),
        "sync_cpu": statistics.median(s[2] for s in syncs),
        "sync_s": [s[0] for s in syncs], "sync_rss": max(s[1] for s in syncs),
        "resync_s": t, "resync_rss": m,
        "data_mdb": relay.data_mdb(), "digest": digest, "sync_line": line,
        "map_stats": [l.strip() for l in stats.splitlines() if l.lower().startswith(("map size", "users", "aliases"))],
    }


# ---- b. change-to-route latency ------------------------------------------------------------

class SyncStream:
    """`ldapsearch -E sync=rp` on one entry; stamps each time the entry shows up in its output."""

    def __init__(self, ldap, dn, secret):
        self.marker = f"dn: {dn}".encode()
        self.stamps = []
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            ["ldapsearch", "-x", "-H", ldap.uri, "-D", ldap.service_dn, "-y", secret, "-LLL",
             "-o", "ldif-wrap=no", "-E", "sync=rp", "-b", dn, "-s", "base", "member"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ldap_tool_env())
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        tail = b""
        fd = self.process.stdout.fileno()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return
            now = time.monotonic()
            data = tail + chunk
            found = data.count(self.marker)
            if found:
                with self.lock:
                    self.stamps.extend([now] * found)
            # a marker split over two reads: keep a tail one byte shorter than it (the
            # marker does not overlap itself, so nothing counted is counted again)
            tail = data[-(len(self.marker) - 1):]

    def count(self):
        with self.lock:
            return len(self.stamps)

    def stamp(self, k):
        with self.lock:
            return self.stamps[k]

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def wait_until(cond, timeout, what, interval=0.01):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def percentile(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))  # nearest rank
    return s[k]


def bench_latency(build, work, provider, n, changes):
    log(f"latency: starting a consumer of the {n}-user provider")
    consumer = Slapd(name="consumer", consumer_of=provider, directory=os.path.join(work, "slapd-consumer"))
    relays, streams, modify = [], [], None
    try:
        started = time.monotonic()
        consumer.start()
        want = n + 1 + 2 + 4  # users, the service account, the groups, the suffix and three ous
        wait_until(lambda: consumer.count(filter="(objectClass=*)") >= want, 3600,
                   f"the consumer to replicate {want} entries", interval=2)
        replicated = time.monotonic() - started
        log(f"latency: consumer has {want} entries after {replicated:.1f} s")
        rp = Relay(build, work, "relay-provider", provider, provider.uri)
        rc = Relay(build, work, "relay-consumer", consumer, consumer.uri)
        relays = [rp, rc]
        for r in relays:
            r.fresh()
            r.follow()
        for r in relays:
            wait_until(lambda r=r: "(RFC 4533 refreshAndPersist)" in r.follower_text(), 1800,
                       f"{r.dir}: the follower's refresh", interval=0.2)
            check_routes(r, n)
        log("latency: both relays follow")
        streams = {"provider": SyncStream(provider, GROUPS[0], rp.secret),
                   "consumer": SyncStream(consumer, GROUPS[0], rc.secret)}
        for s in streams.values():
            wait_until(lambda s=s: s.count() >= 1, 600, "the sync=rp client's refresh")
        modify = subprocess.Popen(["ldapmodify", "-x", "-H", provider.uri, "-D", provider.admin_dn,
                                   "-w", provider.admin_password, "-o", "nettimeout=30"],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env=ldap_tool_env(), text=True)
        # Source-state users to move: every 3rd from 3 on is neither migrated nor dual unless a multiple of 7.
        movers = [i for i in range(3, n + 1, 3) if not is_migrated(i) and not is_dual(i)]
        poll_times = []

        def visible(relay, addr, action):
            """Polls route until `action`; returns the monotonic time the answer was read."""
            deadline = time.monotonic() + 60
            while True:
                before = time.monotonic()
                r = subprocess.run(relay.cmd("route", addr), capture_output=True, text=True, timeout=30)
                now = time.monotonic()
                poll_times.append(now - before + POLL_SLEEP)
                got = r.stdout.split()
                if len(got) > 1 and got[1] == action:
                    return now
                if now > deadline:
                    raise RuntimeError(f"{relay.dir}: {addr} not {action} 60 s after the change: "
                                       f"{r.stdout}{r.stderr}\n{relay.follower_text()[-3000:]}")
                time.sleep(POLL_SLEEP)

        results = {"relay-provider": [], "relay-consumer": [], "provider": [], "consumer": []}
        seq = 0
        base_counts = {k: s.count() for k, s in streams.items()}

        def change(k, watch, record):
            nonlocal seq
            i = movers[(k // 2) % len(movers)]
            add = k % 2 == 0
            addr = f"{user_uid(i)}@contoso.com"
            op = "add" if add else "delete"
            t0 = time.monotonic()
            modify.stdin.write(f"dn: {GROUPS[0]}\nchangetype: modify\n{op}: member\n"
                               f"member: {people_dn(user_uid(i))}\n\n")
            modify.stdin.flush()
            seq += 1
            action = "rewrite" if add else "relay"
            t_relay = visible(watch, addr, action)
            for name, s in streams.items():
                wait_until(lambda s=s, name=name: s.count() >= base_counts[name] + seq, 60,
                           f"the {name} sync=rp client to see change {seq}", interval=0.001)
            for other in relays:  # both relays settle before the next change
                if other is not watch:
                    visible(other, addr, action)
            if record:
                results["relay-" + ("provider" if watch is rp else "consumer")].append(t_relay - t0)
                for name, s in streams.items():
                    results[name].append(s.stamp(base_counts[name] + seq - 1) - t0)

        for k in range(4):  # warm-up (first modify of the ldapmodify session, caches)
            change(k, rp, False)
        for watch in relays:
            log(f"latency: {changes} changes watched on {os.path.basename(watch.dir)}")
            for k in range(changes):
                change(k, watch, True)
                time.sleep(0.02)
            if changes % 2:  # leave the mover in the source state
                change(changes, watch, False)
        for r in relays:
            if r.follower.poll() is not None:
                raise RuntimeError(f"{r.dir}: follower exited: {r.follower_text()[-2000:]}")
        return {"n": n, "changes": changes, "replicated_s": replicated, "results": results,
                "poll_mean": statistics.mean(poll_times), "poll_p99": percentile(poll_times, 99),
                "group_members": sum(1 for i in range(1, n + 1) if is_migrated(i))}
    finally:
        if modify is not None:
            modify.stdin.close()
            modify.wait(30)
        for s in (streams.values() if isinstance(streams, dict) else []):
            s.close()
        for r in relays:
            r.stop()
        consumer.close()


# ---- report --------------------------------------------------------------------------------

def fmt_s(x):
    return f"{x:.2f} s" if x >= 1 else f"{x * 1000:.0f} ms"


def report(args, initial, latency, commit):
    lines = ["## Directory sync (`bench/directory_sync.py`)", ""]
    lines.append(f"{datetime.date.today().isoformat()}, `sudo python3 bench/directory_sync.py "
                 f"{args.build_arg} --users {args.users} --changes {args.changes} --rounds {args.rounds}`"
                 f", coexist-map from {commit}; {platform.node()}: {os.cpu_count()} cores shared with other jobs "
                 f"(load average {args.load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), slapd "
                 f"{slapd_version()} (back_mdb), a private provider on loopback.")
    lines.append("")
    if initial:
        lines += ["### a. Initial sync into an empty map", "",
                  "Floor: paged `ldapsearch -E pr=500/noprompt` of the same people and attributes "
                  "plus the two group entries (base), as the same service account, LDIF to /dev/null. "
                  f"Medians of the interleaved rounds; peak RSS is the largest of them.", "",
                  "| users | ldapsearch (floor) | `coexist-map sync` | ratio | target 2x | floor RSS | sync peak RSS "
                  "| data.mdb | RSS - data.mdb | target +64 MiB | re-sync, 0 changes |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in initial:
            f, s = statistics.median(r["floor_s"]), statistics.median(r["sync_s"])
            over = (r["sync_rss"] - r["data_mdb"]) / MIB
            lines.append(
                f"| {r['n']:,} | {fmt_s(f)} ({', '.join(f'{x:.2f}' for x in r['floor_s'])}) "
                f"| {fmt_s(s)} ({', '.join(f'{x:.2f}' for x in r['sync_s'])}) | {s / f:.2f} "
                f"| {'met' if s <= 2 * f else 'MISSED'} | {r['floor_rss'] / MIB:.0f} MiB "
                f"| {r['sync_rss'] / MIB:.0f} MiB | {r['data_mdb'] / MIB:.0f} MiB | {over:+.0f} MiB "
                f"| {'met' if over <= 64 else 'MISSED'} | {fmt_s(r['resync_s'])}, {r['resync_rss'] / MIB:.0f} MiB |")
        lines.append("")
        for r in initial:
            lines.append(f"- {r['n']:,}: CPU (user+sys, median) ldapsearch {r['floor_cpu']:.2f} s, sync "
                         f"{r['sync_cpu']:.2f} s; slapadd of the LDIF {r['slapadd_s']:.1f} s; `{r['sync_line']}`; "
                         f"`{r['digest']}`")
        lines.append("")
    if latency:
        L = latency
        res = L["results"]
        lines += ["### b. Change-to-route latency", "",
                  f"{L['changes']} changes per relay to cn=migrated ({L['group_members']:,} members, "
                  f"{L['n']:,} users), one at a time, alternately adding a user and removing it again; "
                  f"t0 = the LDIF record handed to a running ldapmodify on the provider. "
                  f"Relays: `coexist-map sync --follow`, visibility by `coexist-map route` in a loop "
                  f"(resolution: one poll = {L['poll_mean'] * 1000:.1f} ms mean, "
                  f"{L['poll_p99'] * 1000:.1f} ms p99, including the 2 ms sleep). "
                  f"Floors: `ldapsearch -E sync=rp` on the group entry, stamped when the entry arrives. "
                  f"The consumer took {L['replicated_s']:.0f} s to replicate the directory from empty.", "",
                  "| who sees the change | p50 | p99 | max | target (p99) |", "|---|---|---|---|---|"]
        pf99, cf99 = percentile(res["provider"], 99), percentile(res["consumer"], 99)
        rows = [("provider, sync=rp client (floor)", res["provider"], ""),
                ("relay following the provider", res["relay-provider"],
                 ("met" if percentile(res["relay-provider"], 99) <= 0.25 else "MISSED") + " (250 ms)"),
                ("consumer, sync=rp client (floor)", res["consumer"], ""),
                ("relay following the consumer", res["relay-consumer"],
                 ("met" if percentile(res["relay-consumer"], 99) <= cf99 + 0.25 else "MISSED")
                 + f" (consumer floor p99 + 250 ms = {(cf99 + 0.25) * 1000:.0f} ms)")]
        for name, v, target in rows:
            lines.append(f"| {name} | {percentile(v, 50) * 1000:.1f} ms | {percentile(v, 99) * 1000:.1f} ms "
                         f"| {max(v) * 1000:.1f} ms | {target} |")
        lines.append("")
        lines.append(f"Relay minus its floor, p50: provider {(percentile(res['relay-provider'], 50) - percentile(res['provider'], 50)) * 1000:.1f} ms, "
                     f"consumer {(percentile(res['relay-consumer'], 50) - percentile(res['consumer'], 50)) * 1000:.1f} ms "
                     f"(the sync=rp floors are sampled during both relays' runs: {len(res['provider'])} changes; "
                     f"floor p99s {pf99 * 1000:.1f} / {cf99 * 1000:.1f} ms).")
        lines.append("")
    return "\n".join(lines)


def slapd_version():
    r = subprocess.run(["/usr/sbin/slapd", "-VVV"], capture_output=True, text=True)
    m = re.search(r"slapd (\d+\.\d+\.\d+)", r.stdout + r.stderr)
    return m.group(1) if m else "?"


def write_results(path, section):
    with open(path) as f:
        text = f.read()
    start = text.find("\n## Directory sync (`bench/directory_sync.py`)")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start + 1] + section.rstrip("\n") + "\n" + (text[end:] if end >= 0 else "")
    with open(path, "w") as f:
        f.write(text)


def bulk_load(ldap, ldif, notes):
    """load_bulk, again into an empty database when slapadd dies of a signal: slapadd -q 2.5.13
    has aborted here now and then with glibc's "double free or corruption" on the same LDIF
    that loads the next time (3 times in ~16 loads of 100k-1M users here, on a loaded machine)."""
    for attempt in range(1, 4):
        try:
            return ldap.load_bulk(ldif, timeout=7200)
        except RuntimeError as e:
            if "failed (-" not in str(e) or attempt == 3:
                raise
            log(f"slapadd died ({str(e).splitlines()[0]}); loading again into an empty database")
            notes.append(f"slapadd -q died of a signal and was run again: {str(e).splitlines()[0]}")
            shutil.rmtree(ldap.data_dir)
            os.makedirs(ldap.data_dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", help="the build directory (holds maps/coexist-map)")
    ap.add_argument("--users", default="100000,1000000", help="comma-separated directory sizes")
    ap.add_argument("--changes", type=int, default=100, help="changes per relay for the latency")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved floor/sync rounds per size")
    ap.add_argument("--latency-users", type=int, default=None,
                    help="the size whose provider the latency runs on (default: the smallest; 0: none)")
    ap.add_argument("--results", default=None, help="replace the 'Directory sync' section of this file")
    ap.add_argument("--commit", default=None,
                    help="the commit BUILD_DIR was built from (default: the git HEAD of its source tree)")
    args = ap.parse_args()
    args.build_arg = args.build
    args.load_start = os.getloadavg()[0]
    build = os.path.abspath(args.build)
    if not os.access(os.path.join(build, "maps", "coexist-map"), os.X_OK):
        sys.exit(f"bench: {build}/maps/coexist-map not built")
    why = missing_requirements()
    if why:
        sys.exit(f"bench: {why}")
    sizes = [int(s) for s in args.users.split(",") if s]
    lat_n = min(sizes) if args.latency_users is None else args.latency_users
    cache = {}
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                cache[k.split(":")[0]] = v
    except OSError:
        pass
    commit = args.commit or subprocess.run(
        ["git", "-C", cache.get("CMAKE_HOME_DIRECTORY", SOURCE), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True).stdout.strip() or "?"
    commit = f"{commit} ({cache.get('CMAKE_BUILD_TYPE') or 'default'} build)"
    initial, latency, failures, notes = [], None, [], []
    for n in sizes:
        work = tempfile.mkdtemp(prefix=f"coexist-bench-dir-{n}-")
        try:
            with Slapd(provider=True, directory=os.path.join(work, "slapd")) as ldap:
                ldif = os.path.join(work, "directory.ldif")
                log(f"{n} users: writing the LDIF")
                write_ldif(ldif, n)
                log(f"{n} users: slapadd")
                took = bulk_load(ldap, ldif, notes)
                os.unlink(ldif)
                ldap.start(timeout=600)
                relay = Relay(build, work, "relay", ldap, ldap.uri)
                r = bench_initial(ldap, relay, n, args.rounds)
                r["slapadd_s"] = took
                initial.append(r)
                shutil.rmtree(relay.map, ignore_errors=True)
                if n == lat_n and args.changes > 0:
                    latency = bench_latency(build, work, ldap, n, args.changes)
                    log("latency: " + ", ".join(
                        f"{k} p50 {percentile(v, 50) * 1000:.1f} ms p99 {percentile(v, 99) * 1000:.1f} ms"
                        for k, v in latency["results"].items()))
        except Exception as e:  # report what was measured, and what failed
            log(f"{n} users: FAILED: {e}")
            failures.append(f"{n:,} users: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    section = report(args, initial, latency, commit)
    for note in notes:
        section += f"\nIn this run: {note}.\n"
    if failures:
        section += "\nFailed in this run: " + "; ".join(failures) + "\n"
    print(section)
    if args.results:
        write_results(args.results, section)
        log(f"wrote the 'Directory sync' section of {args.results}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench: run as root (a private slapd)")
    main()
