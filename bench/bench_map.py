"""The benchmarks' shared users and map (bench/relay.py, lookups.py, import_memory.py).

user{N}@contoso.com for N = 0..users-1; user N is migrated iff N % 10 == 0, routed to
o365.contoso.com. bench_null_lookup_server and bench_load_client (C++) apply the same rule, so
their answers equal coexist's for these keys.
"""

import os
import subprocess


def migrated(n):
    """Whether user n is migrated (the shared rule)."""
    return n % 10 == 0


def write_users_csv(path, users):
    """A coexist-map import file of `users` users: address,state."""
    with open(path, "w") as f:
        f.write("address,state\n")
        f.writelines(f"user{i}@contoso.com,{'migrated' if migrated(i) else 'source'}\n" for i in range(users))


def new_map(build, ini, map_dir):
    """`coexist-map init` of the map of `ini`, group nogroup: the daemons run as nobody, and the
    map's group is theirs, as the deploy kit sets it up. Returns coexist-map's path."""
    tool = os.path.join(build, "maps", "coexist-map")
    subprocess.run([tool, "-c", ini, "init"], check=True, capture_output=True)
    subprocess.run(["chgrp", "-R", "nogroup", map_dir], check=True)
    return tool
