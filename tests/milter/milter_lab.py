"""Shared set-up for the coexist-milter integration tests: a map built with the real
coexist-map, a coexist.ini, the milter under test and a private Postfix wired to it.

Binaries come from the environment (ctest sets them): COEXIST_MILTER, COEXIST_MAP.
"""

import grp
import os
import pwd
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "harness"))

import coexist_harness as h  # noqa: E402
from coexist_harness.scenarios import DOMAINS_INI, fill_map, relay_routes  # noqa: E402

MILTER = os.environ.get("COEXIST_MILTER", "")
MAP_TOOL = os.environ.get("COEXIST_MAP", "")
DAEMON_USER = "nobody"  # the milter drops to it: the map's permissions are tested too
DAEMON_GROUP = grp.getgrgid(pwd.getpwnam(DAEMON_USER).pw_gid).gr_name
SENDER = "sender@fabrikam.example"

# The shared scenario's domains (coexist_harness/scenarios.py): contoso.com (alias domain
# contoso.net, unknown users relayed to Google) and northwind.com (authoritative: unknown users
# refused at RCPT).
INI = """\
[map]
path = {map}

[routing]
recipient_delimiter = +
keep_extension = yes
unknown_recipient = relay
loop_limit = 3

""" + DOMAINS_INI.replace("{", "{{").replace("}", "}}") + """
[milter]
socket = {socket}
user = {user}
socket_group = {group}
socket_mode = {mode}
"""


def require_binaries():
    for path in (MILTER, MAP_TOOL):
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"binary not found: {path!r} (set COEXIST_MILTER and COEXIST_MAP)")


def write_ini(lab, name, socket, group=DAEMON_GROUP, mode="0660", map_dir=None):
    path = lab.path(name)
    with open(path, "w") as f:
        f.write(INI.format(map=map_dir or lab.path("map"), socket=socket, user=DAEMON_USER,
                           group=group, mode=mode))
    os.chmod(path, 0o644)
    return path


def coexist_map(ini, *args):
    r = subprocess.run([MAP_TOOL, "-c", ini, *args], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"coexist-map {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout


def make_map(lab, ini):
    """The map directory as a deployment has it (root:<daemon group> 0750), with the scenario
    table's users and aliases."""
    map_dir = lab.path("map")
    os.makedirs(map_dir, exist_ok=True)
    os.chown(map_dir, 0, grp.getgrnam(DAEMON_GROUP).gr_gid)
    os.chmod(map_dir, 0o750)
    coexist_map(ini, "init")
    fill_map(MAP_TOOL, ini)
    return map_dir


def add_sinks(lab):
    return {n: lab.add_sink(n) for n in ("google", "newsys", "internet")}


def milter_endpoint(spec):
    """Postfix's spelling of a libmilter socket spec."""
    kind, _, rest = spec.partition(":")
    if kind == "unix":
        return spec
    port, _, host = rest.partition("@")
    return f"inet:[{host}]:{port}" if kind == "inet6" else f"inet:{host}:{port}"


def add_relay(lab, sinks, milter_spec, name="relay"):
    return lab.add_postfix(
        name,
        routes=relay_routes(sinks),
        default_sink=sinks["internet"],
        main_cf={"smtpd_milters": milter_endpoint(milter_spec),
                 "milter_default_action": "tempfail",
                 "milter_protocol": "6"})


def start_milter(lab, ini, name="milter", wait=True):
    p = lab.spawn(name, [MILTER, "-c", ini, "--stderr"])
    if wait:
        p.wait_log(r"starting coexist-milter", timeout=15)
    return p
