#!/usr/bin/env python3
"""Relay throughput: coexist against plain Postfix doing the same job with its own table.

One run, same machine, same map (N users, every other one migrated), same messages (one
recipient each, half of them migrated users), four SMTP clients in parallel, deliveries to two
loopback smtp-sinks without dump files (counted from the maillog: dump files cost a quarter of
the throughput). Configurations, each in a fresh private Postfix:

  plain      virtual_alias_maps = lmdb:  (postmap'd migrated users: what an admin would do alone)
  socketmap  virtual_alias_maps = socketmap:...:virtual   (coexist-policyd)
  milter     smtpd_milters = coexist-milter
  milter+policy  the milter, and check_policy_service = coexist-policyd at RCPT

Every configuration must deliver every message, the migrated ones to the new system: a fast
wrong answer is not a result. Prints a markdown table with msgs/s and the ratio to plain.

  sudo bench/relay_throughput.py [--users N] [--messages M] [--rounds R] [--build DIR]
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SOURCE, "tests", "harness"))
from coexist_harness import Lab, SmtpSession, postmap, tool_config_dir, wait_listening, wait_until  # noqa: E402

CLIENTS = 4


def write_config(lab, ports):
    ini = lab.path("coexist.ini")
    with open(ini, "w") as f:
        f.write(f"""[map]
path = {lab.path('map')}
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


def build_map(lab, build, ini, users):
    csv = lab.path("users.csv")
    with open(csv, "w") as f:
        f.write("address,state\n")
        for i in range(users):
            f.write(f"user{i}@contoso.com,{'migrated' if i % 2 == 0 else 'source'}\n")
    tool = os.path.join(build, "maps", "coexist-map")
    subprocess.run([tool, "-c", ini, "init"], check=True, capture_output=True)
    # The daemons run as nobody: the map's group is theirs, as the deploy kit sets it up.
    os.chmod(lab.path(), 0o755)
    subprocess.run(["chgrp", "-R", "nogroup", lab.path("map")], check=True)
    subprocess.run([tool, "-c", ini, "import", csv], check=True, capture_output=True)
    # The same routing as a plain Postfix table.
    table = lab.path("virtual")
    with open(table, "w") as f:
        for i in range(0, users, 2):
            f.write(f"user{i}@contoso.com user{i}@o365.contoso.com\n")
    r = postmap(tool_config_dir(lab.path()), f"lmdb:{table}")
    if r.returncode != 0:
        raise RuntimeError(f"postmap lmdb:{table}: {r.stderr}")
    return f"lmdb:{table}"


def send_all(pf, messages, users):
    """Four clients, each its share of messages in one SMTP session; returns failures."""
    failures = []

    def client(k):
        with SmtpSession("127.0.0.1", pf.smtpd_port, timeout=60) as s:
            for n in range(k, messages, CLIENTS):
                rcpt = f"user{(n * 7919) % users}@contoso.com"
                r = s.send("bench@example.org", [rcpt], body="x")
                if not r.queued:
                    failures.append((rcpt, r))
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def sent_count(pf):
    return pf.log().count("status=sent")


def measure(lab, name, main_cf, routes, messages, users):
    pf = lab.add_postfix(name, routes=routes, main_cf=dict(main_cf, default_process_limit="100"))
    start = time.monotonic()
    failures = send_all(pf, messages, users)
    if failures:
        raise RuntimeError(f"{name}: {len(failures)} messages refused, e.g. {failures[0]}")
    wait_until(lambda: sent_count(pf) >= messages, 600, f"{name}: {messages} deliveries",
               interval=0.1, on_timeout=pf.log_tail)
    elapsed = time.monotonic() - start
    new_port = routes["o365.contoso.com"].rsplit(":", 1)[1]
    to_new = sum(1 for d in pf.deliveries() if d.status == "sent" and d.relay.endswith(":" + new_port))
    expected_new = sum(1 for n in range(messages) if ((n * 7919) % users) % 2 == 0)
    if to_new != expected_new:
        raise RuntimeError(f"{name}: {to_new} deliveries to the new system, expected {expected_new}")
    pf.stop()
    return messages / elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"))
    args = ap.parse_args()

    with Lab("bench") as lab:
        ports = {k: lab.free_port() for k in ("milter", "policy", "socketmap")}
        ini = write_config(lab, ports)
        plain_table = build_map(lab, args.build, ini, args.users)
        lab.spawn("milter", [os.path.join(args.build, "milter", "coexist-milter"), "-c", ini, "--stderr"])
        lab.spawn("policyd", [os.path.join(args.build, "policyd", "coexist-policyd"), "-c", ini, "--stderr"])
        for p in ports.values():
            wait_listening("127.0.0.1", p, 10)
        sinks = {}
        for name in ("google", "newsys"):
            port = lab.free_port()
            lab.spawn(name, ["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "256"])
            wait_listening("127.0.0.1", port, 10)
            sinks[name] = f"smtp:[127.0.0.1]:{port}"
        routes = {"contoso.com": sinks["google"], "o365.contoso.com": sinks["newsys"]}
        configs = [
            ("plain", {"virtual_alias_maps": plain_table}),
            ("socketmap", {"virtual_alias_maps": f"socketmap:inet:127.0.0.1:{ports['socketmap']}:virtual"}),
            ("milter", {"smtpd_milters": f"inet:127.0.0.1:{ports['milter']}"}),
            ("milter+policy", {"smtpd_milters": f"inet:127.0.0.1:{ports['milter']}",
                               "smtpd_recipient_restrictions":
                                   f"check_policy_service inet:127.0.0.1:{ports['policy']}"}),
        ]
        rates = {name: [] for name, _ in configs}
        for r in range(args.rounds):  # interleaved, so drift hits every configuration alike
            for name, cf in configs:
                rates[name].append(measure(lab, f"{name.replace('+', '-')}-{r}", cf, routes,
                                           args.messages, args.users))
                print(f"round {r + 1}: {name}: {rates[name][-1]:.0f} msgs/s", file=sys.stderr)
        base = statistics.median(rates["plain"])
        print(f"\n{args.messages} messages x {args.rounds} rounds, {args.users} users, {CLIENTS} clients; "
              f"median msgs/s\n")
        print("| configuration | msgs/s (median) | runs | ratio to plain |")
        print("|---|---|---|---|")
        for name, _ in configs:
            med = statistics.median(rates[name])
            runs = ", ".join(f"{x:.0f}" for x in rates[name])
            print(f"| {name} | {med:.0f} | {runs} | {med / base:.2f} |")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench: run as root (private Postfix instances)")
    main()
