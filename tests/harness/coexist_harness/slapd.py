"""A private OpenLDAP slapd on loopback for the directory tests, the bench and the lab.

    with Slapd(provider=True) as ldap:               # temp dir, guardian, 127.0.0.1:<free port>
        ldap.load_bulk(directory_ldif(["ann", "bob"], migrated=["ann"]))   # offline slapadd
        ldap.start()
        with Slapd(consumer_of=ldap) as replica:     # syncrepl refreshAndPersist from `ldap`
            replica.start()
            ldap.ldapmodify(...); replica.search(BASE, "(uid=ann)", ["mail"])

Or inside a Lab: Slapd(lab=lab) puts its files under the lab's directory, registers every slapd
process with the lab's guardian and is stopped by lab.close() like a spawned daemon.

What the server is (kept close to a real site, so the follower meets real behaviour):
- slapd.conf (-f), back_mdb with suffix dc=contoso,dc=com, rootdn cn=admin,<suffix>
  (ADMIN_PASSWORD), maxsize 4 GiB (1M users fit), dbnosync (tests, not durability: a killed
  slapd keeps its data, a crashed machine might not), `index entryUUID,entryCSN eq` as
  syncprov and syncrepl want.
- provider=True: overlay syncprov (checkpoint 100 10, sessionlog 10000), so RFC 4533 works.
  consumer_of=<Slapd>: syncrepl rid=001 refreshAndPersist from that provider, bound as its
  rootdn, retry "1 +"; and syncprov too, so a consumer can itself be followed (as real sites do).
- refint=True: overlay refint on member and uniqueMember, as contrib/directory/README.md says.
- The read-only service account cn=coexist,ou=services,<suffix> (SERVICE_PASSWORD; its entry
  comes from directory_ldif). ACLs, deliberately simple: userPassword is readable by nobody
  (auth only, self may change it); everything else is readable by everyone, anonymous included.
- Size limits like a real server: 500 entries for a plain search (slapd's default), unlimited
  through the Simple Paged Results control (size.prtotal=unlimited), so a client that does not
  page breaks at 500 while one that pages gets everything. The service account (and the rootdn)
  have no limits: an RFC 4533 refresh is not paged, and real sites lift limits for sync accounts.
- tls=TestCA(...): TLSCACertificateFile/TLSCertificateFile/TLSCertificateKeyFile, StartTLS on
  the ldap:// port and ldaps:// on a second free port (ldaps_uri); client certificates are
  verified when sent (TLSVerifyClient try).

It runs as root (no -u/-g), here and in CI. Every ldap* tool runs with -x -H uri -D admin
-w password -o nettimeout=10 and LDAPNOINIT=1, so the machine's /etc/ldap/ldap.conf and
~/.ldaprc never change what a test does (ldap_tool_env()); a tool that must speak TLS uses
tls_tool_env(ca_cert) instead, since LDAPNOINIT also ignores the LDAPTLS_* variables.

Timing here (2 cores): start ~0.1 s, stop of a consumer ~0.01 s, slapadd -q of 10k users ~0.1 s.
"""

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from . import guardian
from .ports import LOOPBACK4, free_port, is_listening, wait_until

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = "/etc/ldap/schema"
MODULE_DIR = "/usr/lib/ldap"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis", "misc")

SUFFIX = "dc=contoso,dc=com"
ADMIN_PASSWORD = "admin-secret"
SERVICE_PASSWORD = "coexist-secret"
MAXSIZE = 4 << 30  # bytes of address space for the mdb file; it only grows with the data


def people_dn(uid, suffix=SUFFIX):
    return f"uid={uid},ou=people,{suffix}"


def group_dn(name, suffix=SUFFIX):
    return f"cn={name},ou=groups,{suffix}"


def service_dn(suffix=SUFFIX):
    return f"cn=coexist,ou=services,{suffix}"


def missing_requirements():
    """Why a private slapd cannot run here (str), or None."""
    if os.geteuid() != 0:
        return "needs root to run a private slapd"
    for tool in (SLAPD, SLAPADD):
        if not os.path.exists(tool):
            return f"{tool} not installed (apt-get install slapd)"
    for tool in ("ldapsearch", "ldapadd", "ldapmodify", "ldapdelete", "ldapmodrdn"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install ldap-utils)"
    return None


def ldap_tool_env():
    """The environment for ldap* tools and anything linked with libldap under test: LDAPNOINIT
    keeps ldap.conf/ldaprc defaults (a site's BASE, TLS_REQCERT, SASL settings) out."""
    env = dict(os.environ)
    env["LDAPNOINIT"] = "1"
    return env


def tls_tool_env(ca_cert, reqcert="demand"):
    """The environment for an ldap* tool speaking TLS: LDAPNOINIT would also drop the
    LDAPTLS_* variables, so instead the system file is replaced by /dev/null (LDAPCONF) and
    no ldaprc can be found (LDAPRC names none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LDAP")}
    env.update(LDAPCONF="/dev/null", LDAPRC=".coexist-no-ldaprc", LDAPTLS_CACERT=ca_cert,
               LDAPTLS_REQCERT=reqcert)
    return env


# ---- a test CA -----------------------------------------------------------------------------

class TestCA:
    """A throw-away CA made with openssl in `directory`: ca_cert, server_cert/server_key (for
    127.0.0.1 and localhost) and client_cert/client_key, all signed by the CA; EC P-256 keys,
    valid for two days. Keys are 0600."""

    def __init__(self, directory, server_names=("localhost",), server_ips=(LOOPBACK4,)):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        p = lambda name: os.path.join(directory, name)  # noqa: E731
        self.ca_cert, self.ca_key = p("ca.crt"), p("ca.key")
        self.server_cert, self.server_key = p("server.crt"), p("server.key")
        self.client_cert, self.client_key = p("client.crt"), p("client.key")
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "2",
                      "-subj", "/CN=coexist test CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        san = ",".join([f"DNS:{n}" for n in server_names] + [f"IP:{i}" for i in server_ips])
        self._leaf("server", self.server_cert, self.server_key, f"/CN={server_ips[0]}",
                   f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
        self._leaf("client", self.client_cert, self.client_key, "/CN=coexist client",
                   "extendedKeyUsage=clientAuth\n")

    def _leaf(self, name, cert, key, subject, extensions):
        csr = os.path.join(self.directory, f"{name}.csr")
        ext = os.path.join(self.directory, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    + extensions)
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                      "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                      "-CAcreateserial", "-days", "2", "-out", cert, "-extfile", ext)
        os.chmod(key, 0o600)

    @staticmethod
    def _openssl(*args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed: {r.stderr}")


# ---- the server ----------------------------------------------------------------------------

class Slapd:
    """One private slapd; see the module docstring. Constructing it picks the port(s) and the
    directory; start() writes slapd.conf and starts it."""

    def __init__(self, name="ldap", lab=None, directory=None, provider=False, consumer_of=None,
                 tls=None, suffix=SUFFIX, extra_schemas=(), refint=False):
        self.name = name
        # The refint overlay (referential integrity of member/uniqueMember), as
        # contrib/directory/README.md tells an admin to load: a modrdn or delete of a user
        # rewrites the groups that name it.
        self.refint = refint
        # e.g. ("msuser",): Debian's schema of Active Directory's user attributes
        # (proxyAddresses, memberOf, objectClass user), for AD-shaped directories.
        self.schemas = SCHEMAS + tuple(extra_schemas)
        self.suffix = suffix
        self.provider = provider
        self.consumer_of = consumer_of
        self.tls = tls
        self.lab = lab
        self.port = free_port()
        self.ldaps_port = free_port() if tls else None
        self.admin_dn = f"cn=admin,{suffix}"
        self.admin_password = ADMIN_PASSWORD
        self.service_dn = service_dn(suffix)
        self.service_password = SERVICE_PASSWORD
        self.process = None
        self._log = None
        self._guardian = None
        self._own_directory = False
        if lab is not None:
            self.directory = lab.path(f"slapd-{name}")
            lab.processes[f"slapd-{name}"] = self   # lab.close() stops us, diagnostics show our log
        elif directory is not None:
            self.directory = directory
        else:
            self.directory = tempfile.mkdtemp(prefix=f"coexist-slapd-{name}-")
            self._own_directory = True
        self.data_dir = os.path.join(self.directory, "data")
        self.config_path = os.path.join(self.directory, "slapd.conf")
        self.log_path = os.path.join(self.directory, "slapd.log")
        os.makedirs(self.data_dir, exist_ok=True)
        if lab is None:
            # Our own guardian: a SIGKILLed test leaves no slapd and no directory behind.
            self._guardian = subprocess.Popen(
                [sys.executable, guardian.__file__], stdin=subprocess.PIPE, text=True,
                start_new_session=True, stdout=subprocess.DEVNULL)
            if self._own_directory and os.environ.get("COEXIST_KEEP_LAB") != "1":
                self._tell("rmtree", self.directory)

    # ---- addresses -----------------------------------------------------------------------

    @property
    def uri(self):
        return f"ldap://{LOOPBACK4}:{self.port}/"

    @property
    def ldaps_uri(self):
        return f"ldaps://{LOOPBACK4}:{self.ldaps_port}/" if self.ldaps_port else None

    # ---- context -------------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
            sys.stderr.write(f"---- slapd {self.name} log tail:\n{self.log_tail()}\n")
        self.close()
        return False

    def close(self):
        """Stops slapd and, when the directory is ours, removes it."""
        self.stop()
        if self._own_directory and os.environ.get("COEXIST_KEEP_LAB") != "1":
            shutil.rmtree(self.directory, ignore_errors=True)
        if self._guardian is not None:
            try:
                self._guardian.stdin.write("done\n")
                self._guardian.stdin.close()
            except OSError:
                pass
            self._guardian.wait(10)
            self._guardian = None

    def _tell(self, kind, arg):
        if self.lab is not None:
            self.lab._tell(kind, arg)
        elif self._guardian is not None:
            self._guardian.stdin.write(f"{kind} {arg}\n")
            self._guardian.stdin.flush()

    # ---- configuration -------------------------------------------------------------------

    def slapd_conf(self):
        """The text of slapd.conf."""
        lines = [f"# private slapd {self.name} (coexist test harness)",
                 f"modulepath {MODULE_DIR}", "moduleload back_mdb"]
        if self.provider or self.consumer_of is not None:
            lines.append("moduleload syncprov")
        if self.refint:
            lines.append("moduleload refint")
        lines += [f"include {SCHEMA_DIR}/{s}.schema" for s in self.schemas]
        lines += [f"pidfile {os.path.join(self.directory, 'slapd.pid')}",
                  f"argsfile {os.path.join(self.directory, 'slapd.args')}",
                  "loglevel stats sync"]
        if self.tls:
            lines += [f"TLSCACertificateFile {self.tls.ca_cert}",
                      f"TLSCertificateFile {self.tls.server_cert}",
                      f"TLSCertificateKeyFile {self.tls.server_key}",
                      "TLSVerifyClient try"]
        # The root DSE and the schema must be readable by anyone: clients discover controls there.
        lines += ['access to dn.base="" by * read',
                  'access to dn.base="cn=Subschema" by * read',
                  "",
                  "database mdb",
                  f"suffix {self.suffix}",
                  f"rootdn {self.admin_dn}",
                  f"rootpw {self.admin_password}",
                  f"directory {self.data_dir}",
                  f"maxsize {MAXSIZE}",
                  "dbnosync",
                  "index objectClass eq",
                  "index uid,mail,member eq",
                  "index entryUUID,entryCSN eq",
                  "sizelimit size.soft=500 size.hard=500 size.prtotal=unlimited",
                  f'limits dn.exact="{self.service_dn}" size=unlimited time=unlimited',
                  "access to attrs=userPassword by self =xw by anonymous auth by * none",
                  "access to * by * read"]
        if self.consumer_of is not None:
            p = self.consumer_of
            lines.append(
                f"syncrepl rid=001 provider={p.uri} type=refreshAndPersist "
                f'searchbase="{self.suffix}" bindmethod=simple binddn="{p.admin_dn}" '
                f'credentials={p.admin_password} retry="1 +"')
        if self.provider or self.consumer_of is not None:
            lines += ["overlay syncprov", "syncprov-checkpoint 100 10",
                      "syncprov-sessionlog 10000"]
        if self.refint:
            lines += ["overlay refint", "refint_attributes member uniqueMember"]
        return "\n".join(lines) + "\n"

    def write_config(self):
        with open(self.config_path, "w") as f:
            f.write(self.slapd_conf())
        os.chmod(self.config_path, 0o600)  # it holds rootpw

    # ---- life cycle ----------------------------------------------------------------------

    def running(self):
        return self.process is not None and self.process.poll() is None

    alive = running  # Lab.spawn/diagnostics duck typing

    def start(self, timeout=60):
        """Starts slapd on the same port(s) and data as before; returns once it answers."""
        if self.running():
            return self
        self.write_config()
        r = subprocess.run([SLAPD, "-T", "test", "-f", self.config_path, "-u"],
                           capture_output=True, text=True, timeout=60)
        # -T test -u: a config error is reported here with its line, not as a silent exit.
        if r.returncode != 0:
            raise RuntimeError(f"slapd {self.name}: slapd.conf does not check:\n{r.stdout}{r.stderr}"
                               f"\n--- {self.config_path}:\n{self.slapd_conf()}")
        urls = self.uri + (f" {self.ldaps_uri}" if self.ldaps_uri else "")
        self._log = open(self.log_path, "ab")
        # -d 0: stay in the foreground (we own the process) and log only errors to stderr;
        # `loglevel` above still goes to syslog, which tests do not rely on.
        self.process = subprocess.Popen([SLAPD, "-h", urls, "-f", self.config_path, "-d", "0"],
                                        stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        self._tell("pid", self.process.pid)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=60):
        """Waits until the root DSE answers (generous: a big mdb may take a moment to open)."""
        def ready():
            if not self.running():
                raise RuntimeError(f"slapd {self.name} exited ({self.process.returncode}):\n"
                                   f"{self.log_tail()}")
            if not is_listening(LOOPBACK4, self.port):
                return False
            r = self._run(["ldapsearch", "-LLL", "-b", "", "-s", "base", "namingContexts"],
                          check=False, timeout=15)
            return r.returncode == 0
        wait_until(ready, timeout, f"slapd {self.name} on {self.uri}", interval=0.1,
                   on_timeout=self.log_tail)

    def stop(self, timeout=30):
        """SIGTERM and wait (slapd closes the mdb cleanly)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._close_process()

    def kill(self):
        """SIGKILL, as a crash would; the data survives (mdb commits are atomic)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
        self._close_process()

    def restart(self, timeout=60):
        self.stop()
        return self.start(timeout)

    def _close_process(self):
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log().splitlines()[-lines:])

    # ---- offline bulk load ---------------------------------------------------------------

    def load_bulk(self, ldif, timeout=3600):
        """Loads LDIF (a path, or the text itself) with offline `slapadd -q`: stops slapd if it
        runs, loads, and starts it again if it ran. For 100k-1M entries, where ldapadd would take
        long. The entries must not exist yet (load into an empty database, or new entries only).
        Returns the seconds slapadd took."""
        import time
        was_running = self.running()
        self.stop()
        self.write_config()
        path = ldif
        if "\n" in ldif or not os.path.exists(ldif):
            path = os.path.join(self.directory, "bulk.ldif")
            with open(path, "w") as f:
                f.write(ldif)
        argv = [SLAPADD, "-q", "-f", self.config_path, "-b", self.suffix, "-l", path]
        if self.provider:
            argv.append("-w")  # contextCSN from the loaded entries: consumers see them as current
        # slapadd -q -w of 2.5.13 aborts now and then on a loaded machine (glibc "double free or
        # corruption" on LDIF that loads the next time; single-threaded, so timing, not a race of
        # ours): 100k users with both cores busy crashed it 3 times in 18 runs, idle 0 in 8, and
        # without -w 0 in 10. ctest -j2 runs this beside other suites, and three crashes in a
        # row failed a run: into a database that was empty before, the load is retried from
        # scratch, five times at most, and every retry is said.
        was_empty = not any(n.endswith(".mdb") for n in os.listdir(self.data_dir))
        attempts = 6
        for attempt in range(attempts):
            started = time.monotonic()
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            took = time.monotonic() - started
            crashed = r.returncode < 0 or "corrupt" in r.stderr or "double free" in r.stderr
            if r.returncode == 0 or not (was_empty and crashed) or attempt == attempts - 1:
                break
            sys.stderr.write(f"slapd harness: slapadd into {self.name} crashed ({r.returncode}: "
                             f"{r.stderr.strip()[-300:]}); retrying into an empty database\n")
            for n in os.listdir(self.data_dir):
                os.unlink(os.path.join(self.data_dir, n))
        if r.returncode != 0:
            raise RuntimeError(f"slapadd into {self.name} failed ({r.returncode}): "
                               f"{r.stdout[-2000:]}{r.stderr[-4000:]}")
        if was_running:
            self.start()
        return took

    # ---- online operations ---------------------------------------------------------------

    def _run(self, argv, input_text=None, check=True, timeout=120):
        full = [argv[0], "-x", "-H", self.uri, "-D", self.admin_dn, "-w", self.admin_password,
                "-o", "nettimeout=10", *argv[1:]]
        r = subprocess.run(full, input=input_text, capture_output=True, text=True,
                           timeout=timeout, env=ldap_tool_env())
        if check and r.returncode != 0:
            shown = " ".join(a if a != self.admin_password else "***" for a in full)
            raise RuntimeError(f"{shown} failed ({r.returncode}): {r.stderr.strip()}"
                               f"{(' ' + r.stdout.strip()) if r.stdout.strip() else ''}")
        return r

    def ldapadd(self, ldif_text):
        return self._run(["ldapadd"], ldif_text).stdout

    def ldapmodify(self, ldif_text):
        return self._run(["ldapmodify"], ldif_text).stdout

    def ldapdelete(self, dn):
        return self._run(["ldapdelete", dn]).stdout

    def modrdn(self, dn, newrdn, new_superior=None):
        """Renames `dn` to `newrdn`, removing the old RDN value; under `new_superior` when given
        (a move), else in the same parent."""
        return self._run(["ldapmodrdn", "-r", *(["-s", new_superior] if new_superior else []), dn, newrdn]).stdout

    def search(self, base, filter="(objectClass=*)", attrs=(), scope="sub"):
        """ldapsearch -LLL as the rootdn (no size limit); returns the LDIF text, unwrapped."""
        return self._run(["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", base, "-s", scope,
                          filter, *attrs]).stdout

    def search_entries(self, base, filter="(objectClass=*)", attrs=(), scope="sub"):
        """search(), parsed: [(dn, {attribute: [values]})] (base64 values left encoded)."""
        out = []
        for block in self.search(base, filter, attrs, scope).strip().split("\n\n"):
            entry = None
            for line in block.splitlines():
                name, _, value = line.partition(": ")
                name = name.rstrip(":")
                if name == "dn":
                    entry = (value, {})
                    out.append(entry)
                elif entry is not None and name:
                    entry[1].setdefault(name, []).append(value)
        return out

    def count(self, base=None, filter="(objectClass=*)"):
        """How many entries match (dn-only search as the rootdn)."""
        text = self.search(base or self.suffix, filter, ["1.1"])
        return sum(1 for line in text.splitlines() if line.startswith("dn:"))

    def __repr__(self):
        return f"Slapd({self.name!r}, {self.uri})"


# ---- directory content ---------------------------------------------------------------------

def user_uid(i):
    """The uid of generated user number i (users=<int>): user0000001, ... (sorts as it counts)."""
    return f"user{i:07d}"


def _uids(users):
    return (user_uid(i) for i in range(1, users + 1)) if isinstance(users, int) else users


def write_directory_ldif(out, users, migrated=(), dual=(), targets=None, aliases=None,
                         domain="contoso.com", suffix=SUFFIX, service_password=SERVICE_PASSWORD,
                         base_entries=True, batches=None):
    """Writes the directory as LDIF to `out` (a path or a text file object), entry by entry, so a
    million users never sit in memory. Returns the number of users written.

    users: an int n (user_uid(1..n)) or an iterable of uids; each becomes
      uid=<uid>,ou=people,<suffix>: inetOrgPerson + inetLocalMailRecipient with uid, cn, sn,
      mail <uid>@<domain>; aliases {uid: [addresses]} -> mailLocalAddress (the alias attribute
      in the tests); targets {uid: address} -> mailRoutingAddress (explicit routing address);
      batches {uid: name} -> businessCategory (the batch attribute in the lab).
    migrated / dual: uids, members of cn=migrated / cn=cutover,ou=groups,<suffix>. The groups are
      groupOfNames (member: DNs, as most sites and AD's `member` have it). groupOfNames requires
      a member, so each group also lists the service account as a placeholder member; it is no
      person under ou=people, so it never becomes a user.
    base_entries: the suffix, ou=people/groups/services and the service account (False: only
      users and groups, e.g. for a second batch).
    """
    if isinstance(out, (str, os.PathLike)):
        with open(out, "w") as f:
            return write_directory_ldif(f, users, migrated, dual, targets, aliases, domain,
                                        suffix, service_password, base_entries, batches)
    targets = targets or {}
    batches = batches or {}
    aliases = aliases or {}
    dc = suffix.split(",")[0].partition("=")[2]
    service = service_dn(suffix)
    if base_entries:
        out.write(f"dn: {suffix}\nobjectClass: dcObject\nobjectClass: organization\n"
                  f"dc: {dc}\no: {dc}\n\n")
        for ou in ("people", "groups", "services"):
            out.write(f"dn: ou={ou},{suffix}\nobjectClass: organizationalUnit\nou: {ou}\n\n")
        out.write(f"dn: {service}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n"
                  f"cn: coexist\nuserPassword: {service_password}\n\n")
    count = 0
    for uid in _uids(users):
        count += 1
        out.write(f"dn: {people_dn(uid, suffix)}\nobjectClass: inetOrgPerson\n"
                  f"objectClass: inetLocalMailRecipient\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
                  f"mail: {uid}@{domain}\n")
        for alias in aliases.get(uid, ()):
            out.write(f"mailLocalAddress: {alias}\n")
        if uid in targets:
            out.write(f"mailRoutingAddress: {targets[uid]}\n")
        if uid in batches:
            out.write(f"businessCategory: {batches[uid]}\n")
        out.write("\n")
    for name, members in (("migrated", migrated), ("cutover", dual)):
        out.write(f"dn: {group_dn(name, suffix)}\nobjectClass: groupOfNames\ncn: {name}\n"
                  f"member: {service}\n")
        for uid in members:
            out.write(f"member: {people_dn(uid, suffix)}\n")
        out.write("\n")
    return count


def directory_ldif(users, migrated=(), dual=(), targets=None, aliases=None, domain="contoso.com",
                   suffix=SUFFIX, base_entries=True, batches=None):
    """write_directory_ldif() into a string (small directories)."""
    buf = io.StringIO()
    write_directory_ldif(buf, users, migrated, dual, targets, aliases, domain, suffix,
                         base_entries=base_entries, batches=batches)
    return buf.getvalue()
