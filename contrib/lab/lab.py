#!/usr/bin/env python3
"""The coexist lab: the guides' coexistence on one machine, on loopback.

Three real Postfix instances and the two coexist daemons:

  google  hosts contoso.com (and contoso.net) mailboxes; forwards each migrated user to the
          routing address, as Google's per-user routing does in the guides; sends everything
          that is not its own through the relay (the smart host both systems send through).
  relay   the MX and smart host: Postfix + coexist-milter + coexist-policyd. contoso.com goes
          to google, o365.contoso.com to newsys, anything else to an "internet" sink.
  newsys  the new system: hosts o365.contoso.com mailboxes; contoso.com users it hosts are
          delivered locally, every other contoso.com address goes out through the relay (the
          outbound connector of an "internal relay" domain).
  ldap    the organisation's directory (a private OpenLDAP slapd with syncprov): the sample users,
          their aliases, their batch (businessCategory), and the groups cn=migrated and
          cn=cutover. The relay's map follows it (`coexist-map sync --follow`, RFC 4533): the
          live migration step is a group change made with ldapmodify, seen by the relay within
          moments, with no reload.

After the guides' flows the lab plays a migration weekend: batch wave1 (GApps3, GApps4) is
scheduled with `coexist-map batch set wave1 migrated --at` a few seconds ahead, mail is sent on
both sides of the instant (nothing runs at the instant: route() acts on the schedule), the
scripts for Google and Exchange Online are printed, and the batch is rolled back with one command.

Then the flows a second time with the relay's contoso.com in transport mode (design 11: `mode =
transport`, the socketmap table `transport` first in the relay's transport_maps): the same
mailboxes, and the new system receives the address the sender used (its X-Original-To), which it
resolves itself, as Exchange Online does for an accepted domain in internal relay mode. And the
difference that matters, in both modes: the new system is down, a message for a migrated user
waits in the relay's queue, the user is rolled back. In rewrite mode the message stays addressed
to the routing address and reaches the new system once it is back; in transport mode it goes to
Google at the next retry, with its original recipient. The lab ends in rewrite mode.

Mailboxes are real maildirs under <lab>/mail/<system>/<user>/. Usage:

  lab.py up      start everything, load the sample map, replay the flows, print the table
  lab.py run     replay the flows on a lab that is up
  lab.py down    stop everything the lab started and remove its directory
  lab.py status  what is running

The lab directory is $COEXIST_LAB_DIR (default /tmp/coexist-lab); binaries come from
$COEXIST_BUILD_DIR (default <source>/build).
"""

import json
import re
import os
import pwd
import grp
import shutil
import signal
import subprocess
import sys
import time
import email.parser
import email.policy

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SOURCE, "tests", "harness"))

from coexist_harness import free_port, wait_listening, wait_until  # noqa: E402
from coexist_harness.postfix import PostfixInstance  # noqa: E402
from coexist_harness.guardian import stop_postfix  # noqa: E402
from coexist_harness import slapd as lab_ldap  # noqa: E402

LAB_DIR = os.environ.get("COEXIST_LAB_DIR", "/tmp/coexist-lab")
BUILD_DIR = os.environ.get("COEXIST_BUILD_DIR", os.path.join(SOURCE, "build"))
STATE_FILE = os.path.join(LAB_DIR, "lab.json")
DAEMON_USER = "nobody"  # the daemons drop to this user: the lab tests the map's permissions too
DAEMON_GROUP = grp.getgrgid(pwd.getpwnam(DAEMON_USER).pw_gid).gr_name
USERS_CSV = os.path.join(SOURCE, "contrib", "lab", "sample-users.csv")
SAMPLE_INI = os.path.join(SOURCE, "contrib", "coexist.ini.sample")
VIRTUAL_SERVICE = "virtual   unix  -       n       n       -       -       virtual"
INTERNET = "outsider@example.org"
WAIT_SECONDS = 60


def binary(name):
    sub = {"coexist-map": "maps", "coexist-milter": "milter", "coexist-policyd": "policyd"}[name]
    path = os.path.join(BUILD_DIR, sub, name)
    if not os.access(path, os.X_OK):
        sys.exit(f"lab: {path} not found: build first (contrib/lab/lab up does)")
    return path


def path(*parts):
    return os.path.join(LAB_DIR, *parts)


# ---- the map ---------------------------------------------------------------------------------

def coexist_map(*args, check=True):
    r = subprocess.run([binary("coexist-map"), "-c", path("coexist.ini"), *args],
                       capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise RuntimeError(f"coexist-map {' '.join(args)}: {r.stdout}{r.stderr}")
    return r.stdout


def write_coexist_ini(ports):
    """The sample config, pointed at the lab's map and loopback ports."""
    replace = {
        ("map", "path"): path("map"),
        ("milter", "socket"): f"inet:{ports['milter']}@127.0.0.1",
        ("milter", "user"): DAEMON_USER,
        ("milter", "socket_group"): DAEMON_GROUP,
        ("policyd", "policy_socket"): f"inet:{ports['policy']}@127.0.0.1",
        ("policyd", "socketmap_socket"): f"inet:{ports['socketmap']}@127.0.0.1",
        ("policyd", "user"): DAEMON_USER,
        ("policyd", "socket_group"): DAEMON_GROUP,
    }
    # Each daemon serves its metrics on a port of its own (the sample has them commented out).
    metrics = {"milter": f"metrics_listen = 127.0.0.1:{ports['milter_metrics']}\n",
               "policyd": f"metrics_listen = 127.0.0.1:{ports['policyd_metrics']}\n"}
    out, section = [], None
    for line in open(SAMPLE_INI):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped[1:-1]
            if section in metrics:
                out += [line, metrics[section]]
                continue
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith(";") else None
        if key and (section, key) in replace:
            line = f"{key} = {replace[(section, key)]}\n"
        out.append(line)
    out.append(directory_section(ports))
    with open(path("coexist.ini"), "w") as f:
        f.writelines(out)
    os.chmod(path("coexist.ini"), 0o644)


def load_map():
    os.makedirs(path("map"), exist_ok=True)
    # The daemons' group owns the map directory; coexist-map keeps the files in that group.
    os.chown(path("map"), 0, grp.getgrnam(DAEMON_GROUP).gr_gid)
    os.chmod(path("map"), 0o750)
    coexist_map("init")
    # The directory is the source of the users (design 9): one full sync before the daemons
    # start, then the follower keeps the map equal to it.
    print(coexist_map("sync").strip())


# ---- the directory ---------------------------------------------------------------------------

LDAP_BASE = f"ou=people,{lab_ldap.SUFFIX}"


def ldap_uri(ports):
    return f"ldap://127.0.0.1:{ports['ldap']}/"


def directory_section(ports):
    """The [directory] section of the lab's coexist.ini: the sample users' directory."""
    return (f"\n[directory]\nuri = {ldap_uri(ports)}\nbind_dn = {lab_ldap.service_dn()}\n"
            f"bind_password_file = {path('ldap.secret')}\nbase = {LDAP_BASE}\n"
            f"filter = (objectClass=inetOrgPerson)\naddress_attribute = mail\n"
            f"alias_attributes = mailLocalAddress\n"
            f"migrated_group = {lab_ldap.group_dn('migrated')}\ndual_group = {lab_ldap.group_dn('cutover')}\n"
            f"batch_attribute = businessCategory\nmax_removals = 50%\n")


def start_directory(ports, state):
    """A private slapd loaded with the sample users (the CSV: state -> group, aliases ->
    mailLocalAddress), started as a lab process so `lab down` stops it."""
    ldap = lab_ldap.Slapd(name="directory", directory=path("slapd"), provider=True)
    ldap.port = ports["ldap"]
    rows = list(users())
    uids = [a.split("@")[0] for a, _, _, _ in rows]
    ldif = lab_ldap.directory_ldif(
        uids, migrated=[a.split("@")[0] for a, st, _, _ in rows if st == "migrated"],
        dual=[a.split("@")[0] for a, st, _, _ in rows if st == "dual"],
        aliases={a.split("@")[0]: al for a, _, _, al in rows if al},
        batches={a.split("@")[0]: b for a, b in batches().items()})
    ldap.load_bulk(ldif)
    with open(path("ldap.secret"), "w") as f:
        f.write(lab_ldap.SERVICE_PASSWORD + "\n")
    os.chmod(path("ldap.secret"), 0o600)
    spawn("slapd", [lab_ldap.SLAPD, "-h", ldap_uri(ports), "-f", ldap.config_path, "-d", "0"], state)
    wait_listening("127.0.0.1", ports["ldap"], 30, "slapd")
    ldap.close()  # only its guardian; the slapd process is the lab's


def ldapmodify(ports, ldif):
    """ldapmodify as the directory's admin, as an admin would type it."""
    r = subprocess.run(["ldapmodify", "-x", "-H", ldap_uri(ports), "-D", f"cn=admin,{lab_ldap.SUFFIX}",
                        "-w", lab_ldap.ADMIN_PASSWORD, "-o", "nettimeout=10"], input=ldif, text=True,
                       capture_output=True, timeout=60, env=lab_ldap.ldap_tool_env())
    return r


def group_change(ports, op, uid):
    return (f"dn: {lab_ldap.group_dn('migrated')}\nchangetype: modify\n{op}: member\n"
            f"member: uid={uid},{LDAP_BASE}\n")


def wait_route(address, expected, timeout=WAIT_SECONDS):
    """Waits until the relay's map routes `address` as `expected` (an action); seconds taken."""
    started = time.monotonic()
    wait_until(lambda: coexist_map("route", address, check=False).split()[1:2] == [expected], timeout,
               f"{address} routed as {expected}", interval=0.01)
    return time.monotonic() - started


def users():
    """(address, state, target, aliases) of every user in the sample CSV."""
    import csv
    with open(USERS_CSV) as f:
        for row in csv.DictReader(f):
            aliases = [a for a in (row.get("aliases") or "").split(";") if a]
            yield row["address"].lower(), row.get("state") or "migrated", row.get("target") or "", aliases


def batches():
    """{address: batch} of the sample users that belong to one."""
    import csv
    with open(USERS_CSV) as f:
        return {row["address"].lower(): row["batch"] for row in csv.DictReader(f) if row.get("batch")}


# ---- the three systems -----------------------------------------------------------------------

def write_map(name, entries):
    p = path("maps", name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        for k, v in entries:
            f.write(f"{k} {v}\n")
    return f"texthash:{p}"


def mailbox_params(system, domains, mailboxes, aliases):
    base = path("mail", system)
    os.makedirs(base, exist_ok=True)
    nobody = pwd.getpwnam("nobody")
    os.chown(base, nobody.pw_uid, nobody.pw_gid)
    return {
        "virtual_mailbox_domains": " ".join(domains),
        "virtual_mailbox_base": base,
        "virtual_mailbox_maps": write_map(f"{system}-mailboxes", [(m, m.split("@")[0] + "/") for m in mailboxes]),
        "virtual_alias_maps": write_map(f"{system}-aliases", aliases),
        "virtual_uid_maps": f"static:{nobody.pw_uid}",
        "virtual_gid_maps": f"static:{nobody.pw_gid}",
        "recipient_delimiter": "+",
    }


def postfix_instances(ports):
    relay_hop = f"smtp:[127.0.0.1]:{ports['relay']}"
    everyone = list(users())
    local_parts = [a.split("@")[0] for a, _, _, _ in everyone]

    # Google keeps every user's mailbox; a migrated user gets a forwarding address (no copy
    # left, envelope unchanged: the guide's settings); aliases are Google's own.
    google_aliases = [("@contoso.net", "@contoso.com")]
    for address, state, target, aliases in everyone:
        google_aliases += [(a, address) for a in aliases]
        if state == "migrated":
            google_aliases.append((address, target or address.split("@")[0] + "@o365.contoso.com"))
    google = PostfixInstance(
        "google", path("google"), ports["google"], default_sink=relay_hop,
        myhostname="google.lab.test", master_cf_extra=[VIRTUAL_SERVICE],
        main_cf=mailbox_params("google", ["contoso.com", "contoso.net"],
                               [f"{lp}@contoso.com" for lp in local_parts], google_aliases))

    # The new system has a mailbox for every user (provisioned before the move); it delivers
    # the users it hosts (the migrated ones) locally and sends other contoso.com mail to the relay.
    newsys_aliases = []
    for address, state, target, aliases in everyone:
        if state == "migrated":
            routing = address.split("@")[0] + "@o365.contoso.com"
            newsys_aliases += [(address, routing)] + [(a, routing) for a in aliases]
    newsys = PostfixInstance(
        "newsys", path("newsys"), ports["newsys"], default_sink=relay_hop,
        myhostname="newsys.lab.test", master_cf_extra=[VIRTUAL_SERVICE],
        main_cf=mailbox_params("newsys", ["o365.contoso.com"],
                               [f"{lp}@o365.contoso.com" for lp in local_parts], newsys_aliases))

    google_hop = f"smtp:[127.0.0.1]:{ports['google']}"
    relay = PostfixInstance(
        "relay", path("relay"), ports["relay"],
        routes={"contoso.com": google_hop, "contoso.net": google_hop,
                "o365.contoso.com": f"smtp:[127.0.0.1]:{ports['newsys']}"},
        default_sink=f"smtp:[127.0.0.1]:{ports['internet']}",
        myhostname="relay.lab.test",
        main_cf={
            "smtpd_milters": f"inet:127.0.0.1:{ports['milter']}",
            # An outage of the milter or the policy service defers mail, never misroutes it.
            "milter_default_action": "tempfail",
            "smtpd_recipient_restrictions":
                f"check_policy_service inet:127.0.0.1:{ports['policy']}",
            "recipient_delimiter": "+",
            # As contrib/postfix/README.md's base: user%contoso.com@localhost would otherwise
            # be resolved to user@contoso.com after every coexist way has looked.
            "allow_percent_hack": "no",
            "swap_bangpath": "no",
        })
    return {"google": google, "newsys": newsys, "relay": relay}


# ---- up / down -------------------------------------------------------------------------------

def spawn(name, argv, state):
    log = open(path(f"{name}.log"), "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
    state["pids"][name] = p.pid
    save_state(state)
    return p


def save_state(state):
    with open(STATE_FILE, "w") as f:
        json.dump(state, f, indent=1)


def load_state():
    try:
        with open(STATE_FILE) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def up():
    if os.path.exists(LAB_DIR):
        down(quiet=True)
    os.makedirs(LAB_DIR)
    os.chmod(LAB_DIR, 0o755)
    ports = {k: free_port() for k in ("relay", "google", "newsys", "internet", "milter", "policy", "socketmap", "ldap",
                                      "milter_metrics", "policyd_metrics")}
    state = {"ports": ports, "pids": {}, "postfix": []}
    save_state(state)
    try:
        write_coexist_ini(ports)
        start_directory(ports, state)
        load_map()
        cfg = path("coexist.ini")
        spawn("sync", [binary("coexist-map"), "-c", cfg, "sync", "--follow"], state)
        spawn("milter", [binary("coexist-milter"), "-c", cfg, "--stderr"], state)
        spawn("policyd", [binary("coexist-policyd"), "-c", cfg, "--stderr"], state)
        os.makedirs(path("internet"), exist_ok=True)
        os.chmod(path("internet"), 0o777)
        spawn("internet", ["smtp-sink", "-u", "nobody", "-d", path("internet", "m."),
                           f"127.0.0.1:{ports['internet']}", "64"], state)
        for what in ("milter", "policy", "socketmap", "internet"):
            wait_listening("127.0.0.1", ports[what], 15, what)
        for name, instance in postfix_instances(ports).items():
            state["postfix"].append(instance.config_dir)
            save_state(state)
            instance.start()
    except BaseException:
        print("lab: start-up failed; logs:", file=sys.stderr)
        for name in ("milter", "policyd", "sync", "slapd"):
            if os.path.exists(path(f"{name}.log")):
                print(f"--- {name}.log\n" + open(path(f"{name}.log")).read()[-3000:], file=sys.stderr)
        down(quiet=True)
        raise
    print(f"lab up in {LAB_DIR}: relay 127.0.0.1:{ports['relay']}, google 127.0.0.1:{ports['google']}, "
          f"newsys 127.0.0.1:{ports['newsys']}")
    return run()


def down(quiet=False):
    state = load_state()
    if state:
        for config_dir in state.get("postfix", []):
            try:
                stop_postfix(config_dir)
            except Exception as e:  # keep going: stop everything else
                print(f"lab: stopping postfix {config_dir}: {e}", file=sys.stderr)
        for name, pid in state.get("pids", {}).items():
            stop_pid(pid)
    if os.path.exists(LAB_DIR):
        shutil.rmtree(LAB_DIR)
    if not quiet:
        print("lab down: everything stopped, " + LAB_DIR + " removed")
    return 0


def stop_pid(pid, timeout=10):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child (down from another process)
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def status():
    state = load_state()
    if not state:
        print("lab is down")
        return 1
    for name, pid in state["pids"].items():
        alive = os.path.exists(f"/proc/{pid}")
        print(f"{name:10} pid {pid} {'running' if alive else 'GONE'}")
    for config_dir in state["postfix"]:
        # `postfix status` says it in the instance's maillog (maillog_file), not on the terminal;
        # its exit status is what tells.
        r = subprocess.run(["postfix", "-c", config_dir, "status"], capture_output=True, text=True)
        print(f"postfix {config_dir}: {'running' if r.returncode == 0 else 'NOT RUNNING'}")
    return 0


# ---- the flows -------------------------------------------------------------------------------

def instances_from_state(state):
    return postfix_instances(state["ports"])  # same ports, same directories: the running ones


def hops(msg):
    """The systems a delivered message passed, in order, from its Received: headers
    ('relay > newsys'): proof of the route, not just of the destination."""
    names = []
    for value in reversed(msg.get_all("Received") or []):
        by = re.search(r"\bby\s+(\S+)", value)
        if by and by.group(1).endswith(".lab.test"):
            names.append(by.group(1).split(".")[0])
    return " > ".join(names)


def deliveries(message_id):
    """Where a message landed: [(mailbox, envelope recipient there, hops)] from the maildirs;
    virtual(8) records the envelope recipient the system received in X-Original-To (before its
    own aliases: what the relay sent) and the final one in Delivered-To."""
    found = []
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    for system in ("google", "newsys"):
        base = path("mail", system)
        if not os.path.isdir(base):
            continue
        for box in sorted(os.listdir(base)):
            new = os.path.join(base, box, "new")
            if not os.path.isdir(new):
                continue
            for name in os.listdir(new):
                with open(os.path.join(new, name), "rb") as f:
                    msg = parser.parse(f, headersonly=True)
                if msg.get("Message-ID") == message_id:
                    received = msg.get("X-Original-To") or msg.get("Delivered-To", "?")
                    found.append((f"{system}:{box}", received, hops(msg)))
    return sorted(found)


def send(instances, via, sender, recipient, extra_headers=()):
    r = instances[via].send(sender, [recipient], extra_headers=extra_headers)
    return r


def wait_all_quiet(instances):
    """Until every queue is empty twice in a row: mail hops google -> relay -> newsys."""
    quiet = {"n": 0}

    def settled():
        if any(i.queue_files() for i in instances.values()):
            quiet["n"] = 0
            return False
        quiet["n"] += 1
        return quiet["n"] >= 3
    wait_until(settled, WAIT_SECONDS, "all lab queues to empty", interval=0.2)


# Each flow: name, Postfix that receives it, sender, recipient, and what must happen: a list of
# landings (mailbox, envelope recipient there, systems passed), or a string for a refusal/bounce.
FLOWS = [
    ("Internet -> GApps1 (migrated)", "relay", INTERNET, "GApps1@contoso.com",
     [("newsys:gapps1", "gapps1@o365.contoso.com", "relay > newsys")]),
    ("GApps2 -> GApps1 (Google forwards)", "google", "gapps2@contoso.com", "gapps1@contoso.com",
     [("newsys:gapps1", "gapps1@o365.contoso.com", "google > relay > newsys")]),
    ("GApps1 -> GApps2 (reply via relay)", "newsys", "gapps1@contoso.com", "gapps2@contoso.com",
     [("google:gapps2", "gapps2@contoso.com", "newsys > relay > google")]),
    ("Internet -> GApps2 (on Google)", "relay", INTERNET, "gapps2@contoso.com",
     [("google:gapps2", "gapps2@contoso.com", "relay > google")]),
    ("Internet -> alias of GApps1", "relay", INTERNET, "sales@contoso.com",
     [("newsys:gapps1", "gapps1@o365.contoso.com", "relay > newsys")]),
    ("Internet -> +extension, domain alias", "relay", INTERNET, "GApps1+News@contoso.net",
     [("newsys:gapps1", "gapps1+News@o365.contoso.com", "relay > newsys")]),
    ("Internet -> dual-delivery user", "relay", INTERNET, "dual1@contoso.com",
     [("google:dual1", "dual1@contoso.com", "relay > google"),
      ("newsys:dual1", "dual1@o365.contoso.com", "relay > newsys")]),
    ("Internet -> unknown user", "relay", INTERNET, "nobody@contoso.com",
     "bounced by google"),
    ("Internet -> looping message", "relay", INTERNET, "GApps1@contoso.com",
     "refused 554 5.4.6"),
]

AFTER_MIGRATION = [
    ("After migration: Internet -> GApps2", "relay", INTERNET, "gapps2@contoso.com",
     [("newsys:gapps2", "gapps2@o365.contoso.com", "relay > newsys")]),
    ("After migration: GApps1 -> GApps2", "newsys", "gapps1@contoso.com", "gapps2@contoso.com",
     [("newsys:gapps2", "gapps2@o365.contoso.com", "newsys > relay > newsys")]),
]


WEEKEND_BATCH = "wave1"
WEEKEND_LEAD_SECONDS = 8  # how far ahead the lab schedules the batch: time for the "before" mail

# Batch wave1 before its scheduled instant, after it, and after the rollback.
BEFORE_INSTANT = [
    ("Before the instant: Internet -> GApps3", "relay", INTERNET, "gapps3@contoso.com",
     [("google:gapps3", "gapps3@contoso.com", "relay > google")]),
    ("Before the instant: GApps1 -> GApps4", "newsys", "gapps1@contoso.com", "gapps4@contoso.com",
     [("google:gapps4", "gapps4@contoso.com", "newsys > relay > google")]),
]
AFTER_INSTANT = [
    ("After the instant: Internet -> GApps3", "relay", INTERNET, "gapps3@contoso.com",
     [("newsys:gapps3", "gapps3@o365.contoso.com", "relay > newsys")]),
    ("After the instant: GApps1 -> GApps4", "newsys", "gapps1@contoso.com", "gapps4@contoso.com",
     [("newsys:gapps4", "gapps4@o365.contoso.com", "newsys > relay > newsys")]),
]
AFTER_ROLLBACK = [
    ("After the rollback: Internet -> GApps3", "relay", INTERNET, "gapps3@contoso.com",
     [("google:gapps3", "gapps3@contoso.com", "relay > google")]),
    ("After the rollback: GApps1 -> GApps4", "newsys", "gapps1@contoso.com", "gapps4@contoso.com",
     [("google:gapps4", "gapps4@contoso.com", "newsys > relay > google")]),
]


def show(*args, check=True):
    """Runs coexist-map as an admin would type it, and prints the command and its output."""
    print(f"$ coexist-map {' '.join(args)}")
    r = subprocess.run([binary("coexist-map"), "-c", path("coexist.ini"), *args],
                       capture_output=True, text=True, timeout=60)
    text = (r.stdout + r.stderr).rstrip()
    if text:
        print("  " + text.replace("\n", "\n  "))
    if check and r.returncode != 0:
        raise RuntimeError(f"coexist-map {' '.join(args)} exited {r.returncode}")
    return r


def weekend(instances):
    """Batch wave1's weekend: scheduled, mail on both sides of the instant, the two systems'
    scripts, the rollback. Returns the table rows."""
    print(f"\n== The weekend: batch {WEEKEND_BATCH} scheduled {WEEKEND_LEAD_SECONDS} s ahead, then rolled back")
    at = int(time.time()) + WEEKEND_LEAD_SECONDS
    at_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    show("batch", "set", WEEKEND_BATCH, "migrated", "--at", at_text)
    show("batch", "list")
    show("route", "--explain", "gapps3@contoso.com")
    rows = replay(instances, BEFORE_INSTANT)
    if time.time() >= at:
        raise RuntimeError("the mail before the instant took longer than the lead time")
    print(f"(waiting for {at_text}: nothing runs at the instant, every relay's route() acts on the schedule)")
    time.sleep(max(0.0, at - time.time()) + 0.5)
    rows += replay(instances, AFTER_INSTANT)
    show("commands", "gam", "--batch", WEEKEND_BATCH, check=False)
    show("commands", "exo", "--batch", WEEKEND_BATCH, check=False)
    show("batch", "set", WEEKEND_BATCH, "source")
    rows += replay(instances, AFTER_ROLLBACK)
    show("history", "gapps3@contoso.com")
    return rows


def decisions(port, service):
    """{action: count} of coexist_decisions_total{service=...} on the metrics port."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'coexist_decisions_total\{(.*)\} ([0-9.e+]+)$', line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("service") == service:
            out[labels["action"]] = out.get(labels["action"], 0) + int(float(m.group(2)))
    return out


def metrics_rows(ports, before):
    """What each daemon's /metrics says was decided during this replay: the milter at each
    RCPT, the policy service at each RCPT. Both saw the same recipients, so the two must agree."""
    milter = decisions(ports["milter_metrics"], "milter")
    policy = decisions(ports["policyd_metrics"], "policy")
    delta = {name: {a: now.get(a, 0) - before[name].get(a, 0) for a in set(now) | set(before[name])}
             for name, now in (("milter", milter), ("policy", policy))}
    print(f"\n$ curl -s http://127.0.0.1:{ports['milter_metrics']}/metrics | grep coexist_decisions_total")
    for action in sorted(milter):
        print(f'  coexist_decisions_total{{action="{action}",service="milter"}} {milter[action]}')
    actions = sorted(a for a in set(delta["milter"]) | set(delta["policy"])
                     if delta["milter"].get(a, 0) or delta["policy"].get(a, 0))
    print("decisions during this replay, milter / policy service: " +
          ", ".join(f"{a} {delta['milter'].get(a, 0)}/{delta['policy'].get(a, 0)}" for a in actions))
    agree = all(delta["milter"].get(a, 0) == delta["policy"].get(a, 0) for a in actions) and bool(actions)
    return agree


def snapshot(ports):
    return {"milter": decisions(ports["milter_metrics"], "milter"),
            "policy": decisions(ports["policyd_metrics"], "policy")}


def replay(instances, flows):
    sent = []
    for name, via, sender, rcpt, expected in flows:
        headers = ()
        if expected == "refused 554 5.4.6":
            # Three relays already stamped it: loop_limit = 3.
            headers = [("X-Coexist-Trace", f"relay{i}.lab.test; Sun, 22 Nov 2026 00:00:0{i} +0000") for i in range(3)]
        result = send(instances, via, sender, rcpt, headers)
        sent.append((name, via, sender, rcpt, expected, result))
    wait_all_quiet(instances)
    rows = []
    for name, via, sender, rcpt, expected, result in sent:
        if isinstance(expected, str) and expected.startswith("refused"):
            code = result.data or result.rcpt.get(rcpt)
            landed = f"refused {code[0]} {code[1].split()[0]}" if code else "?"
            ok = landed == expected and not deliveries(result.message_id)
            rows.append((name, sender, rcpt, expected, landed, "-", "-", ok))
            continue
        if isinstance(expected, str) and expected.startswith("bounced"):
            relay_log = [d for d in instances["relay"].deliveries(result.message_id) if d.to == rcpt.lower()]
            bounced = [d for d in relay_log if d.status == "bounced"]
            landed = "bounced by google (" + " ".join(bounced[0].text.split("said: ")[-1].split()[:2]) + ")" if bounced else \
                (", ".join(f"{d.status}" for d in relay_log) or "nothing")
            ok = bool(bounced) and not deliveries(result.message_id)
            rows.append((name, sender, rcpt, expected, landed, "-", "relay > google", ok))
            continue
        got = deliveries(result.message_id)
        want = sorted(expected)
        ok = got == want
        rows.append((name, sender, rcpt, " + ".join(m for m, _, _ in want),
                     " + ".join(m for m, _, _ in got) or (f"not delivered (SMTP {result.rcpt.get(rcpt)})"),
                     " + ".join(r for _, r, _ in got) or "-", " ; ".join(h for _, _, h in got) or "-", ok))
    return rows


def print_table(rows):
    head = ("flow", "envelope sender", "recipient", "expected mailbox", "landed in", "envelope rcpt there",
            "path", "result")
    widths = [max(len(str(r[i])) if i < 7 else 4 for r in rows + [head]) for i in range(8)]
    fmt = "  ".join(f"{{:{w}}}" for w in widths)
    print(fmt.format(*head))
    print(fmt.format(*("-" * w for w in widths)))
    for r in rows:
        print(fmt.format(*r[:7], "pass" if r[7] else "FAIL"))


# ---- transport mode (design 11): the flows again without rewriting ---------------------------

ROLLBACK_USER = "gapps3@contoso.com"  # on Google in the CSV: Google has no forward for it
# Another user on Google, whose message through the relay after the rollback replaces the queue
# manager's cached resolver answer for ROLLBACK_USER (see queued_across_rollback).
CACHE_FLUSH_USER = "gapps2@contoso.com"


def transport_flows():
    """FLOWS as they land with the relay's contoso.com in transport mode: the same mailboxes, and
    the new system receives the address the sender used (its X-Original-To), which it resolves
    itself as Exchange does for an accepted domain. Flows that reach the new system through
    Google's forward, dual's copy and everything on Google are unchanged."""
    as_sent = {"Internet -> GApps1 (migrated)": "GApps1@contoso.com",
               "Internet -> alias of GApps1": "sales@contoso.com",
               "Internet -> +extension, domain alias": "GApps1+News@contoso.net"}
    flows = []
    for name, via, sender, rcpt, expected in FLOWS:
        if name in as_sent:
            expected = [(box, as_sent[name], hops) for box, _, hops in expected]
        flows.append(("Transport mode: " + name, via, sender, rcpt, expected))
    return flows


def set_contoso_mode(mode, ports):
    """[domain contoso.com] mode = MODE in the lab's coexist.ini (new_system_nexthop = the newsys
    instance in transport mode), then the daemons restarted on it: they read the INI at start."""
    out, section = [], None
    for line in open(path("coexist.ini")):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped[1:-1]
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith(";") else None
        if section == "domain contoso.com" and key in ("mode", "new_system_nexthop"):
            continue
        out.append(line)
        if stripped == "[domain contoso.com]" and mode == "transport":
            out.append(f"mode = transport\nnew_system_nexthop = smtp:[127.0.0.1]:{ports['newsys']}\n")
    with open(path("coexist.ini"), "w") as f:
        f.writelines(out)
    state = load_state()
    cfg = path("coexist.ini")
    for name, program in (("milter", "coexist-milter"), ("policyd", "coexist-policyd")):
        stop_pid(state["pids"][name])
        spawn(name, [binary(program), "-c", cfg, "--stderr"], state)
    for what in ("milter", "policy", "socketmap"):
        wait_listening("127.0.0.1", ports[what], 15, what)


def relay_transport_maps(instances, ports, mode):
    """The relay's transport_maps: in transport mode coexist's socketmap table first, then the
    lab's own routes (contoso.com -> google, ...). Ours must be in front of any table that also
    answers a full address (contrib/postfix/main.cf.transport explains the search order)."""
    from coexist_harness import routes_table
    relay = instances["relay"]
    tables = [routes_table(relay.routes)]
    if mode == "transport":
        tables.insert(0, f"socketmap:inet:127.0.0.1:{ports['socketmap']}:transport")
    relay.set_main_cf({"transport_maps": ", ".join(tables)})


def newsys_accepts_contoso(instances):
    """The new system accepts contoso.com (and contoso.net) for the users it hosts, as Exchange
    Online does for an accepted domain in internal relay mode: each migrated user's addresses
    resolve to the mailbox; every other contoso.com address still goes out through the relay."""
    aliases = []
    for address, state, _, user_aliases in users():
        if state != "migrated":
            continue
        local = address.split("@")[0]
        routing = f"{local}@o365.contoso.com"
        for a in [address] + user_aliases:
            aliases += [(a, routing), (a.split("@")[0] + "@contoso.net", routing)]
    instances["newsys"].set_main_cf(
        {"virtual_alias_maps": write_map("newsys-aliases-transport", sorted(set(aliases)))})


def queued_across_rollback(instances, mode):
    """The new system is down while ROLLBACK_USER is migrated; a message for it waits in the
    relay's queue; the user is rolled back; the relay retries. Returns a table row."""
    relay, newsys = instances["relay"], instances["newsys"]
    show("set", ROLLBACK_USER, "migrated")
    newsys.stop()
    try:
        result = send(instances, "relay", INTERNET, ROLLBACK_USER)
        wait_until(lambda: [d for d in relay.deliveries(result.message_id) if d.status == "deferred"],
                   WAIT_SECONDS, "the message deferred by the unreachable new system")
        queued = relay.deliveries(result.message_id)[-1].to
        print(f"{mode} mode: the new system is down, the message waits in the relay's queue for <{queued}>")
        show("set", ROLLBACK_USER, "source")
        rolled_back = time.monotonic()
        if mode == "transport":
            # The queue manager resolves the transport again when the message re-enters the
            # active queue (Postfix's qmgr_message_resolve()), but its resolver client keeps its
            # one last answer for the same address up to 30 s (resolve_clnt.c): a retry that soon
            # would still take the old route. On a real relay the deferred queue's retry interval
            # is far longer; here one message for another address through the relay replaces
            # that answer (as policyd_transport does), so the lab does not wait out the 30 s.
            # Postfix's own behaviour and settings are unchanged.
            other = send(instances, "relay", INTERNET, CACHE_FLUSH_USER)
            wait_until(lambda: [d for d in relay.deliveries(other.message_id) if d.status == "sent"],
                       WAIT_SECONDS, f"the message for {CACHE_FLUSH_USER} relayed")
            relay.flush()
            wait_until(lambda: deliveries(result.message_id), WAIT_SECONDS, "the retried message delivered")
            print(f"transport mode: delivered to Google {time.monotonic() - rolled_back:.0f} s after "
                  f"the rollback, at a retry (lab only: a message for {CACHE_FLUSH_USER} went first, "
                  "so the relay's queue manager did not reuse its resolver's answer of up to 30 s ago)")
        else:
            relay.flush()
            wait_until(lambda: len([d for d in relay.deliveries(result.message_id)
                                    if d.status == "deferred"]) >= 2,
                       WAIT_SECONDS, "the retry after the rollback")
            print(f"rewrite mode: after the rollback the relay still retries <{queued}>, "
                  "rewritten when the message was accepted")
    finally:
        newsys.start(quick=True)  # its queue and configuration passed postfix's checks at `up`
    relay.flush()
    wait_all_quiet(instances)
    got = deliveries(result.message_id)
    if mode == "transport":
        want = [("google:gapps3", ROLLBACK_USER, "relay > google")]
        name = "Transport mode: queued, then rolled back"
    else:
        # What rewrite mode cannot do: the user is back on Google, the message goes to newsys.
        want = [("newsys:gapps3", "gapps3@o365.contoso.com", "relay > newsys")]
        name = "Rewrite mode: queued, then rolled back"
    return (name, INTERNET, ROLLBACK_USER, " + ".join(m for m, _, _ in want),
            " + ".join(m for m, _, _ in got) or "not delivered", " + ".join(r for _, r, _ in got) or "-",
            " ; ".join(h for _, _, h in got) or "-", got == want)


def transport_mode(instances, state):
    """The guides' flows again with the relay's contoso.com in transport mode, then a message
    queued across a rollback in each mode. Leaves the lab in rewrite mode. Returns table rows."""
    ports = state["ports"]
    print("\n== Transport mode: contoso.com routed without rewriting (mode = transport)")
    ldapmodify(ports, group_change(ports, "delete", "gapps2"))  # the flows' starting state
    wait_route("gapps2@contoso.com", "relay")
    rows = [queued_across_rollback(instances, "rewrite")]
    set_contoso_mode("transport", ports)
    relay_transport_maps(instances, ports, "transport")
    newsys_accepts_contoso(instances)
    show("route", "--explain", "GApps1+News@contoso.net")
    rows += replay(instances, transport_flows())
    rows.append(queued_across_rollback(instances, "transport"))
    set_contoso_mode("rewrite", ports)
    relay_transport_maps(instances, ports, "rewrite")
    return rows


def run():
    state = load_state()
    if not state:
        sys.exit("lab: not up (run: lab up)")
    instances = instances_from_state(state)
    for i in instances.values():
        i.running = True
    ports = state["ports"]
    # A replay starts from the sample state: GApps2 not (yet) in the migrated group, batch
    # wave1 on the source with nothing scheduled.
    ldapmodify(ports, group_change(ports, "delete", "gapps2"))
    wait_route("gapps2@contoso.com", "relay")
    coexist_map("batch", "set", WEEKEND_BATCH, "source")
    counted_before = snapshot(ports)
    rows = replay(instances, FLOWS)
    print()
    print_table(rows)
    change = group_change(ports, "add", "gapps2")
    print(f"\n$ ldapmodify -x -H {ldap_uri(ports)} -D cn=admin,{lab_ldap.SUFFIX} -w {lab_ldap.ADMIN_PASSWORD} <<EOF"
          "   # GApps2 joins the migrated group; live, no reload")
    print("  " + change.strip().replace("\n", "\n  ") + "\n  EOF")
    r = ldapmodify(ports, change)
    if r.returncode != 0:
        raise RuntimeError(f"ldapmodify: {r.stdout}{r.stderr}")
    took = wait_route("gapps2@contoso.com", "rewrite")
    print(f"relay's map follows the directory: gapps2@contoso.com -> "
          f"{coexist_map('route', 'gapps2@contoso.com').split()[2]} after {took * 1000:.0f} ms")
    after = replay(instances, AFTER_MIGRATION)
    print()
    print_table(after)
    weekend_rows = weekend(instances)
    print()
    print_table(weekend_rows)
    after += weekend_rows
    metrics_agree = metrics_rows(ports, counted_before)
    after.append(("Metrics: milter and policy service count the same decisions", "-", "-", "agree",
                  "agree" if metrics_agree else "differ", "-", "-", metrics_agree))
    transport_rows = transport_mode(instances, state)
    print()
    print_table(transport_rows)
    after += transport_rows
    failed = [r for r in rows + after if not r[7]]
    print(f"\n{len(rows) + len(after) - len(failed)} passed, {len(failed)} failed")
    print(f"mailboxes: {path('mail')}/<system>/<user>/new   logs: {path('*', 'maillog')}, {path('*.log')}")
    return 1 if failed else 0


def main(argv):
    if os.geteuid() != 0:
        sys.exit("lab: run as root (Postfix instances, privilege drop of the daemons)")
    command = argv[1] if len(argv) > 1 else "up"
    actions = {"up": up, "down": down, "run": run, "status": status}
    if command not in actions:
        sys.exit(__doc__)
    return actions[command]()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
