"""The scenario table every suite shares: the managed domains, the users and aliases in the map,
and where a message to each recipient must land. The milter tests and the policyd tests (policy
service and socketmap) load the same map and expect the same sinks with the same envelope
recipients: the programs call the same route(), so the table is one.

    from coexist_harness.scenarios import DOMAINS_INI, USERS, ALIASES, DELIVERIES, ROUTES

Transport mode has its own table of where things land (TRANSPORT_DELIVERIES) over the same map,
with transport_domains_ini(nexthop) in place of DOMAINS_INI.

A suite writes DOMAINS_INI into its coexist.ini (after its own [map] and [routing] sections),
fills the map with USERS and ALIASES through the real coexist-map (fill_map), and wires its relay
with ROUTES; DELIVERIES then holds for it.
"""

import subprocess

# contoso.com: the source is Google (MX = sink "google"), the new system is o365.contoso.com;
# contoso.net is the same domain. Its unknown users follow [routing] unknown_recipient (the
# milter suite relays them, the policyd suite refuses them). northwind.com is authoritative.
DOMAINS_INI = """\
[domain contoso.com]
routing_domain = o365.contoso.com
aliases = contoso.net

[domain northwind.com]
routing_domain = o365.northwind.com
unknown_recipient = reject
"""

# The map: (address, state, explicit target or "").
USERS = [
    ("ann@contoso.com", "migrated", ""),
    ("bob@contoso.com", "source", ""),
    ("carol@contoso.com", "migrated", "carol@contoso.onmicrosoft.com"),
    ("dave@contoso.com", "dual", ""),
    ("erin@contoso.com", "source", ""),
    ("nina@northwind.com", "migrated", ""),
    # The same cases again under the names the policyd black-box tests use.
    ("dan@contoso.com", "dual", ""),
    ("joe@contoso.com", "migrated", "jsmith@contoso.onmicrosoft.com"),
]
ALIASES = [
    ("annie@contoso.com", "ann@contoso.com"),
    ("anna@contoso.com", "ann@contoso.com"),
]

# Which sink is the next hop for a domain: relay_domains and transport_maps of the relay.
ROUTES = {
    "contoso.com": "google",
    "contoso.net": "google",
    "northwind.com": "google",
    "o365.contoso.com": "newsys",
    "o365.northwind.com": "newsys",
    "contoso.onmicrosoft.com": "newsys",
}

# recipient as sent -> {sink: sorted envelope recipients it receives}. Each line is one rule of
# design section 2, reached through Postfix.
DELIVERIES = [
    ("ann@contoso.com", {"newsys": ["ann@o365.contoso.com"]}),                    # migrated
    ("bob@contoso.com", {"google": ["bob@contoso.com"]}),                         # source
    ("carol@contoso.com", {"newsys": ["carol@contoso.onmicrosoft.com"]}),         # explicit target
    ("dave@contoso.com", {"google": ["dave@contoso.com"],
                          "newsys": ["dave@o365.contoso.com"]}),                  # dual
    ("annie@contoso.com", {"newsys": ["ann@o365.contoso.com"]}),                  # alias
    ("Ann+news@contoso.com", {"newsys": ["ann+news@o365.contoso.com"]}),          # +extension
    ("ann@contoso.net", {"newsys": ["ann@o365.contoso.com"]}),                    # domain alias
    ("nina@northwind.com", {"newsys": ["nina@o365.northwind.com"]}),              # second domain
]

# Transport mode (design 11): contoso.com (with contoso.net) keeps the recipient of its migrated
# users and only chooses their next hop, the new system's; northwind.com still rewrites: the mode
# is a per-domain choice. Where each recipient of DELIVERIES lands then: the same sink, and at the
# new system the envelope recipient exactly as sent (alias, +extension, case and domain alias
# included: Exchange resolves those itself). carol's explicit target is not used in transport mode.
# dave (dual) still gets a second recipient, the routing address: one copy per system.
TRANSPORT_DELIVERIES = [
    ("ann@contoso.com", {"newsys": ["ann@contoso.com"]}),                         # migrated
    ("bob@contoso.com", {"google": ["bob@contoso.com"]}),                         # source
    # An explicit target names another address: only a rewrite reaches it, in either mode.
    ("carol@contoso.com", {"newsys": ["carol@contoso.onmicrosoft.com"]}),         # explicit target
    ("dave@contoso.com", {"google": ["dave@contoso.com"],
                          "newsys": ["dave@o365.contoso.com"]}),                  # dual
    ("annie@contoso.com", {"newsys": ["annie@contoso.com"]}),                     # alias
    ("Ann+news@contoso.com", {"newsys": ["Ann+news@contoso.com"]}),               # +extension
    ("ann@contoso.net", {"newsys": ["ann@contoso.net"]}),                         # domain alias
    ("nina@northwind.com", {"newsys": ["nina@o365.northwind.com"]}),              # rewrite domain
]


def transport_domains_ini(nexthop, contoso_mode="transport"):
    """DOMAINS_INI with contoso.com in `contoso_mode` ("transport": migrated users go to
    `nexthop`, a Postfix transport such as smtp:[127.0.0.1]:PORT; "rewrite": as DOMAINS_INI)."""
    if contoso_mode == "rewrite":
        return DOMAINS_INI
    return DOMAINS_INI.replace(
        "aliases = contoso.net\n",
        f"aliases = contoso.net\nmode = transport\nnew_system_nexthop = {nexthop}\n", 1)


# An unknown user of the authoritative domain: 550 5.1.1 at RCPT, whichever program answers.
UNKNOWN_IN_REJECT_DOMAIN = "ghost@northwind.com"


def relay_routes(sinks):
    """ROUTES with each sink name replaced by the lab's sink (for Lab.add_postfix)."""
    return {domain: sinks[name] for domain, name in ROUTES.items()}


def fill_map(coexist_map, config):
    """Writes USERS and ALIASES into the map of `config` with the real tool: `coexist_map` is the
    path of coexist-map. The map must be initialised. Raises RuntimeError, with the tool's
    output, when a command fails."""
    def run(*args):
        r = subprocess.run([coexist_map, "-c", config, *args], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"coexist-map {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}")
    for address, state, target in USERS:
        run("set", address, state, *(["--target", target] if target else []))
    for alias, primary in ALIASES:
        run("alias", alias, primary)
