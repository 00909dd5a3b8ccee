#!/usr/bin/env python3
"""Fault tests through a real Postfix: a load of messages, a fault in the middle of it, and the
tally by Message-ID (tests/fault/fault_lab.py): 0 lost, 0 misrouted, 0 duplicated, no 5xx.

    run_fault.py SCENARIO      (one of SCENARIOS below; ctest runs each as fault_SCENARIO)

Each scenario: the load runs ('before'), the fault starts ('fault') and lasts until every
relay's senders have seen its 4xx (or, for the writers, until they finish), then it ends
('after') and the load goes on. Then the senders retry what was refused with 4xx, the queues
are flushed and drained, and every message is counted. Every wait is bounded.
"""

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fault_lab import (MAP_TOOL, FaultLab, Load, Tally, User, h, maillog_rejects,  # noqa: E402
                       require_binaries, run_map, write_csv)

LOAD_BEFORE = 100    # messages accepted before the fault starts
LOAD_AFTER = 100     # ... and after it ends
FAULT_REPLIES = 5    # 4xx replies each relay's senders must see while the fault lasts
GROW_USERS = 10000   # users a growing import adds
GROW_CHUNKS = 4      # imports one after the other in map_grows
BULK_USERS = 40000   # the import that two_writers runs beside `set`


class Scenario:
    """A fault: begin() starts it, end() ends it; both get the FaultLab and the Load."""

    small_map = False
    expect_4xx = True          # the fault must show as 4xx at the relays while it lasts
    daemons_survive = True     # the daemons' pids must be the same afterwards
    clients_per_relay = 2      # parallel SMTP sessions per relay

    def __init__(self, fl, load):
        self.fl = fl
        self.load = load

    def exclude(self):
        return ()

    def relays(self):
        """The relays the load goes through: those the fault can touch."""
        return self.fl.relays

    def begin(self):
        raise NotImplementedError

    def end(self):
        raise NotImplementedError

    def verify(self):
        """Checks once the load has stopped, before the drain (failures go to
        self.fl.failures; messages sent here are counted in the tally)."""


class MilterKilled(Scenario):
    """coexist-milter SIGKILLed mid-load, restarted once its absence shows as 4xx."""
    daemons_survive = False

    def relays(self):
        return [self.fl.milter_relay]

    def begin(self):
        self.fl.kill(self.fl.milter)
        self.load.wait_replies("fault", "4xx", FAULT_REPLIES, [self.fl.milter_relay])

    def end(self):
        self.fl.start_milter()


class PolicydKilled(Scenario):
    """coexist-policyd (policy service and socketmap) SIGKILLed mid-load, then restarted."""
    daemons_survive = False

    def relays(self):
        return [self.fl.policy_relay]

    def begin(self):
        self.fl.kill(self.fl.policyd)
        self.load.wait_replies("fault", "4xx", FAULT_REPLIES, [self.fl.policy_relay])

    def end(self):
        self.fl.start_policyd()


class MapRenamed(Scenario):
    """The map directory renamed away, then back: every decision meanwhile is a 4xx."""

    def begin(self):
        os.rename(self.fl.map_dir, self.fl.map_dir + ".away")
        self.load.wait_replies("fault", "4xx", FAULT_REPLIES)

    def end(self):
        os.rename(self.fl.map_dir + ".away", self.fl.map_dir)


class MapTruncated(Scenario):
    """data.mdb replaced by its first 8192 bytes (temp file + rename), then restored: the
    daemons answer 4xx and live (issue 10, defect 1: today they die of SIGBUS)."""

    def begin(self):
        data = self.fl.map_file()
        self.saved = self.fl.lab.path("data.mdb.saved")
        subprocess.run(["cp", "-p", data, self.saved], check=True)
        self.fl.replace_file(data, self.saved, length=8192)
        self.load.wait_replies("fault", "4xx", FAULT_REPLIES)

    def end(self):
        self.fl.replace_file(self.fl.map_file(), self.saved)


class Writers(Scenario):
    """Shared by the writer scenarios: a large import of users the load never writes to."""
    small_map = True
    clients_per_relay = 4      # more milter threads reading while the map grows
    expect_4xx = False         # growing the map is no fault: 4xx allowed (retried), not needed

    def import_users(self, prefix, count=GROW_USERS):
        users = [User(f"{prefix}{i}@contoso.com", "migrated" if i % 2 == 0 else "source")
                 for i in range(count)]
        csv = self.fl.lab.path(f"{prefix}.csv")
        write_csv(csv, users)
        return users, subprocess.Popen([MAP_TOOL, "-c", self.fl.ini, "import", csv,
                                        "--batch", prefix],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def route(self, address):
        """(action, address or None) as `coexist-map route` decides now."""
        out = run_map(self.fl.ini, "route", address).stdout.split()
        return out[1], (out[2] if len(out) > 2 else None)

    def check_routes(self, users):
        """Sends one message per user through each relay; the tally checks where they went."""
        for relay in self.fl.relays:
            for u in users:
                self.load.send_now(relay, [u.address])

    def wait_writer(self, proc, what, timeout=180):
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            self.fl.failures.append(f"{what} did not finish within {timeout}s: {out}")
            return None
        return proc.returncode, out


class MapGrows(Writers):
    """An import that grows the map while the load runs (from a 1 MiB map where the config
    still has map_size); the daemons see the new users at once."""

    def begin(self):
        size_before = _map_size_mib(self.fl.ini)
        # Several imports, one after the other: each grows the map again while the milter's
        # threads read it.
        self.users = []
        for chunk in range(GROW_CHUNKS):
            users, proc = self.import_users(f"grow{chunk}x")
            result = self.wait_writer(proc, "the growing import")
            if result is None:
                return
            rc, out = result
            if rc != 0:
                self.fl.failures.append(f"the growing import exited {rc}: {out}")
                return
            self.users += users
            self.fl.by_address.update({u.address: u for u in users})
        size_after = _map_size_mib(self.fl.ini)
        print(f"map size: {size_before} MiB before the import, {size_after} MiB after")
        if self.fl.map_size_line and not (size_after and size_before and size_after > size_before):
            self.fl.failures.append(f"the import did not grow the map ({size_before} -> {size_after} "
                                    "MiB): the scenario tested nothing")

    def end(self):
        pass

    def verify(self):
        if self.users:
            self.check_routes(self.users[-8:])  # written last, in the grown part of the map


class TwoWriters(Writers):
    """A large import and `coexist-map set` commands at the same time, during the load: each
    writer succeeds. A writer that waits behind another and meets the map it grew re-reads the
    size and goes on (issue 10, defect 5: it used to exit 3 with MDB_MAP_RESIZED); exit 3 is a
    failure, and is also checked to have left the map unchanged."""

    def exclude(self):
        self.set_users = [u for u in self.fl.users if u.domain == "contoso.com"
                          and u.state == "source"][:10]
        return [u.address for u in self.set_users]

    def begin(self):
        self.users, proc = self.import_users("bulk", BULK_USERS)
        self.set_results = []
        # One `set` after another while the import runs: each waits for LMDB's writer lock,
        # and meets the map the import grew.
        for u in self.set_users:
            r = run_map(self.fl.ini, "set", u.address, "migrated", timeout=180, check=False)
            self.set_results.append((u, r.returncode, r.stdout + r.stderr))
            if proc.poll() is not None:
                break
        result = self.wait_writer(proc, "the import")
        self.import_result = result

    def end(self):
        pass

    def verify(self):
        fl = self.fl
        checks = []
        for u, rc, out in self.set_results:
            action, _ = self.route(u.address)
            print(f"set {u.address} migrated: exit {rc}; route now: {action}"
                  + (f"; said: {out.strip()}" if rc else ""))
            if rc == 0:
                if action != "rewrite":
                    fl.failures.append(f"set {u.address} exited 0 but route says {action}")
                fl.by_address[u.address] = User(u.address, "migrated")
            elif rc == 3:
                fl.failures.append(f"set {u.address} failed beside the import (exit 3: {out.strip()})")
                if action != "relay":
                    fl.failures.append(f"set {u.address} failed (exit 3: {out.strip()}) but "
                                       f"changed the map: route says {action}")
            else:
                fl.failures.append(f"set {u.address} exited {rc}: {out.strip()}")
            checks.append(fl.by_address[u.address])
        if self.import_result is not None:
            rc, out = self.import_result
            print(f"import of {BULK_USERS} users: exit {rc} {out.strip()}")
            sample = [self.users[0], self.users[1], self.users[-2], self.users[-1]]
            actions = [self.route(u.address)[0] for u in sample]
            if rc == 0:
                want = ["rewrite" if u.state == "migrated" else "relay" for u in sample]
                if actions != want:
                    fl.failures.append(f"import exited 0 but route says {actions}, want {want}")
                fl.by_address.update({u.address: u for u in self.users})
                checks += sample
            elif rc == 3:
                fl.failures.append(f"the import failed beside the sets (exit 3: {out.strip()})")
                if actions != ["relay"] * len(sample):
                    fl.failures.append(f"import failed (exit 3) but changed the map: {actions}")
            else:
                fl.failures.append(f"import exited {rc}: {out.strip()}")
        ok_writers = sum(1 for _, rc, _ in self.set_results if rc == 0) + \
            (1 if self.import_result and self.import_result[0] == 0 else 0)
        if ok_writers == 0:
            fl.failures.append("no writer succeeded")
        self.check_routes(checks)


def _t(started):
    return f"[{time.monotonic() - started:5.1f}s]"


def _map_size_mib(ini):
    r = run_map(ini, "stats", check=False)
    m = re.search(r"map size: ([\d.]+) MiB", r.stdout)
    return float(m.group(1)) if m else None


SCENARIOS = {
    "milter_killed": MilterKilled,
    "policyd_killed": PolicydKilled,
    "map_renamed": MapRenamed,
    "map_truncated": MapTruncated,
    "map_grows": MapGrows,
    "two_writers": TwoWriters,
}


def run(name):
    cls = SCENARIOS[name]
    started = time.monotonic()
    with FaultLab(name, small_map=cls.small_map) as fl:
        # The scenario is built before the load so it can keep the load off its users.
        scenario = cls(fl, None)
        load = Load(fl, relays=scenario.relays(), exclude=scenario.exclude(),
                    clients_per_relay=cls.clients_per_relay)
        scenario.load = load
        pids = {"milter": fl.milter.pid, "policyd": fl.policyd.pid}
        load.start()
        try:
            load.wait_sent(LOAD_BEFORE)
            load.phase = "fault"
            print(f"{_t(started)} fault begins after {load.sent()} messages accepted", flush=True)
            try:
                scenario.begin()
            except TimeoutError as e:
                # Counted like the rest: the tally below says what the fault did to the mail.
                fl.failures.append(f"the fault never showed as expected: {e}".split("\n")[0])
            finally:
                # A fault never outlives the test's fault phase, even when begin() timed out.
                scenario.end()
                if scenario.daemons_survive:
                    fl.check_alive(fl.milter, pids["milter"])
                    fl.check_alive(fl.policyd, pids["policyd"])
            load.phase = "after"
            print(f"{_t(started)} fault ends after {load.sent()} messages accepted", flush=True)
            load.wait_sent(LOAD_AFTER)
        finally:
            load.stop()
        print(f"{_t(started)} load stopped; the senders retry what was refused", flush=True)
        load.retry_refused()
        scenario.verify()
        load.retry_refused()
        print(f"{_t(started)} draining the queues", flush=True)
        fl.drain()
        print(f"{_t(started)} queues empty", flush=True)
        tally = Tally(fl, load)

        for relay in fl.relays:
            four, five = maillog_rejects(relay)
            print(f"maillog of {relay.name}: {len(four)} 4xx rejects, {len(five)} 5xx rejects")
            if four:
                print(f"  e.g. {four[0]}")
            if five:
                fl.failures.append(f"{relay.name} refused with 5xx:\n  " + "\n  ".join(five[:10]))
            if cls.expect_4xx and relay in load.relays and not four:
                fl.failures.append(f"{relay.name}: no 4xx in the maillog while the fault lasted")
        for p in (fl.milter, fl.policyd):
            sanitizer = [line for line in p.log().splitlines()
                         if "ERROR: AddressSanitizer" in line or "runtime error:" in line]
            if sanitizer:  # the CI also runs these with ASan/UBSan-built daemons
                fl.failures.append(f"{p.name}: sanitizer report:\n  " + "\n  ".join(sanitizer[:5]))
            if not p.alive():
                fl.failures.append(f"{p.name} died after the fault: exit status {p.popen.poll()}")
            elif not fl.holds_map_lock(p):
                fl.failures.append(f"{p.name} (pid {p.pid}) holds no lock on lock.mdb after the "
                                   "fault: it opened the map twice and closed a copy (defect 3)")
        bounced = [line for relay in fl.relays for line in relay.log().splitlines()
                   if "status=bounced" in line]
        if bounced:
            fl.failures.append("bounces:\n  " + "\n  ".join(bounced[:10]))
        if load.errors:
            print(f"connection errors seen by the senders: {len(load.errors)}, e.g. {load.errors[:3]}")

        elapsed = time.monotonic() - started
        print(f"fault_{name}: {tally.summary()} time={elapsed:.1f}s")
        if not tally.ok() or fl.failures:
            print("FAILED\n" + tally.report())
            for f in fl.failures:
                print("FAILURE: " + f)
            print(fl.diagnostics())
            return 1
        print("PASSED")
        return 0


def main():
    h.require_environment()
    require_binaries()
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(SCENARIOS)}")
    sys.exit(run(sys.argv[1]))


if __name__ == "__main__":
    main()
