#!/usr/bin/env python3
"""Runs the [slapd] cases of test_ldap_session (Catch2) against a private slapd: TLS with a
throw-away CA (StartTLS and ldaps://, client certificates verified when sent) and 2,500
generated users, each with one alias. The program's path comes from COEXIST_TEST_LDAP_SESSION."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from coexist_harness import SKIP_CODE  # noqa: E402
from coexist_harness import slapd as s  # noqa: E402

USERS = 2500


def main():
    why = s.missing_requirements()
    if why:
        print(f"SKIP: {why}", file=sys.stderr)
        return SKIP_CODE
    program = os.environ["COEXIST_TEST_LDAP_SESSION"]
    with tempfile.TemporaryDirectory(prefix="coexist-ldap-ca-") as tmp, \
            s.Slapd("session", provider=True, tls=s.TestCA(os.path.join(tmp, "ca"))) as ldap:
        ca = ldap.tls
        other = s.TestCA(os.path.join(tmp, "other-ca"))
        ldap.load_bulk(s.directory_ldif(USERS, aliases={s.user_uid(i): [f"alias{i}@contoso.com"]
                                                         for i in range(1, USERS + 1)}))
        ldap.start()
        env = dict(s.ldap_tool_env(),
                   COEXIST_TEST_LDAP_URI=ldap.uri,
                   COEXIST_TEST_LDAPS_URI=ldap.ldaps_uri,
                   COEXIST_TEST_LDAP_CA=ca.ca_cert,
                   COEXIST_TEST_LDAP_OTHER_CA=other.ca_cert,
                   COEXIST_TEST_LDAP_CLIENT_CERT=ca.client_cert,
                   COEXIST_TEST_LDAP_CLIENT_KEY=ca.client_key,
                   COEXIST_TEST_LDAP_BIND_DN=ldap.service_dn,
                   COEXIST_TEST_LDAP_PASSWORD=ldap.service_password)
        with tempfile.TemporaryDirectory() as cwd:   # no ./ldaprc of the caller's
            r = subprocess.run([program, "[slapd]", *sys.argv[1:]], env=env, cwd=cwd)
        if r.returncode != 0:
            sys.stderr.write(f"---- slapd log tail:\n{ldap.log_tail()}\n")
        return r.returncode


if __name__ == "__main__":
    sys.exit(main())
