# Sourced by package-check.sh --boot, with coexist (and systemd) installed in $root: boot that
# root with systemd as PID 1 in a container with its own network (loopback only), start the
# units exactly as shipped, and send mail through Debian's Postfix, chroot and all, to them:
# unix sockets under /var/spool/postfix/coexist, named relative to the queue directory.

step "boot: coexist and Postfix configured for unix sockets under /var/spool/postfix/coexist"
have_milter=no
in_root test -x /usr/sbin/coexist-milter && have_milter=yes
printf '%s\n' '[map]' 'path = /var/lib/coexist' \
  '[domain contoso.com]' 'routing_domain = o365.contoso.com' \
  '[milter]' 'socket = unix:/var/spool/postfix/coexist/milter.sock' \
  'socket_group = postfix' 'socket_mode = 0660' \
  '[policyd]' 'policy_socket = unix:/var/spool/postfix/coexist/policy.sock' \
  'socketmap_socket = unix:/var/spool/postfix/coexist/socketmap.sock' \
  'socket_group = postfix' 'socket_mode = 0660' > "$root/etc/coexist/coexist.ini"
in_root install -d -o coexist -g postfix -m 0750 /var/spool/postfix/coexist
in_root coexist-map set ann@contoso.com migrated > /dev/null
in_root coexist-map set carol@contoso.com migrated > /dev/null
# The socketmap way (3) plus the policy service (2); Debian's master.cf as shipped (chrooted
# smtpd, cleanup, trivial-rewrite). Both systems are discard(8) transports that log the route.
in_root postconf -e \
  'relay_domains = contoso.com' \
  'transport_maps = inline:{o365.contoso.com=discard:new-system, contoso.com=discard:old-system}' \
  'smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service unix:coexist/policy.sock' \
  'virtual_alias_maps = socketmap:unix:coexist/socketmap.sock:virtual' \
  'relay_recipient_maps = socketmap:unix:coexist/socketmap.sock:recipients' \
  'virtual_alias_domains =' 'milter_default_action = tempfail' \
  'inet_interfaces = loopback-only' 'mydestination = localhost' \
  'smtp_dns_support_level = disabled' 'smtpd_peername_lookup = no'
in_root systemctl enable coexist-policyd.service 2>/dev/null
rm -f "$root/usr/sbin/policy-rc.d"
for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}"; done
mounted=()

# systemd-nspawn cleans up below /run/systemd/nspawn and insists that it is a tmpfs.
mkdir -p /run/systemd/nspawn
if [ "$(stat -f -c %T /run/systemd/nspawn)" != tmpfs ]; then
  mount -t tmpfs -o mode=755 tmpfs /run/systemd/nspawn && mounted+=(/run/systemd/nspawn)
fi
step "boot: systemd-nspawn --boot --private-network"
systemd-nspawn -D "$root" --boot --private-network --register=no --keep-unit --quiet \
  < /dev/null > "$work/nspawn.log" 2>&1 &
nspawn_pid=$!
init=
for _ in $(seq 50); do init=$(pgrep -P "$nspawn_pid" | head -n1) && [ -n "$init" ] && break; sleep 0.2; done
in_boot() { nsenter -t "$init" -a /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
bcheck() {  # bcheck DESCRIPTION COMMAND...: run in the booted container
  local what=$1; shift
  if out=$(in_boot "$@" 2>&1); then echo "ok   $what"; else echo "FAIL $what"; echo "$out" | sed 's/^/     /'; fail=1; fi
}
state=
for _ in $(seq 150); do  # until the container's systemd has finished booting (at most a minute)
  state=$(in_boot systemctl is-system-running 2>&1) || true
  case $state in running|degraded) break ;; esac
  sleep 0.4
done
echo "     system state: $state"

daemon_facts() {  # daemon_facts NAME: how the running daemon was started by its unit
  in_boot sh -c 'pid=$(systemctl show -P MainPID '"$1"'.service)
    printf "user=%s " "$(stat -c %U /proc/$pid)"
    awk "/^(CapEff|NoNewPrivs|Seccomp):/ { printf \"%s%s \", \$1, \$2 }" /proc/$pid/status
    awk "\$5 == \"/\" { split(\$6, o, \",\"); printf \"root=%s \", o[1] }
         \$5 == \"/var/lib/coexist\" { split(\$6, o, \",\"); printf \"map=%s\", o[1] }" /proc/$pid/mountinfo'
}
bcheck "coexist-policyd.service is active" systemctl is-active coexist-policyd.service
facts=$(daemon_facts coexist-policyd 2>&1 || true)
echo "     coexist-policyd: $facts"
case $facts in
  "user=coexist CapEff:0000000000000000 NoNewPrivs:1 Seccomp:2 root=ro map=rw") echo "ok   runs as coexist, no capabilities, seccomp, / read-only, map rw (lock.mdb)" ;;
  *) echo "FAIL unexpected process state"; fail=1 ;;
esac
bcheck "sockets coexist:postfix 0660 in /var/spool/postfix/coexist" sh -c \
  '[ "$(stat -c %U:%G:%a /var/spool/postfix/coexist/policy.sock /var/spool/postfix/coexist/socketmap.sock | sort -u)" = coexist:postfix:660 ]'
in_boot systemd-analyze security coexist-policyd.service 2>/dev/null | grep Overall | sed 's/^/     /' || true

sent_log() {  # sent_log PATTERN: wait for a discard(8) delivery line matching PATTERN
  for _ in $(seq 50); do
    in_boot journalctl --no-pager -q -t postfix/discard | grep -E "$1" && return 0
    sleep 0.2
  done
  return 1
}
step "boot: mail through Postfix's chrooted smtpd and cleanup"
in_boot smtp-source -m 1 -f sender@example.org -t ann+news@contoso.com 127.0.0.1:25 || true
in_boot smtp-source -m 1 -f sender@example.org -t dave@contoso.com 127.0.0.1:25 || true
if sent_log 'to=<ann\+news@o365\.contoso\.com>, orig_to=<ann\+news@contoso\.com>.*status=sent \(new-system\)' > /dev/null &&
   sent_log 'to=<dave@contoso\.com>.*status=sent \(old-system\)' > /dev/null; then
  echo "ok   migrated ann+news@ went to the new system as ann+news@o365.contoso.com, unknown dave@ to the old one"
else
  echo "FAIL routing through Postfix:"; in_boot journalctl --no-pager -q -t postfix/smtpd -t postfix/cleanup \
    -t postfix/discard -t coexist-policyd | tail -n 20 | sed 's/^/     /'; fail=1
fi
in_boot systemctl stop coexist-policyd.service
out=$(in_boot smtp-source -m 1 -f sender@example.org -t ann@contoso.com 127.0.0.1:25 2>&1 || true)
if grep -q "451 4.3.5" <<<"$out"; then
  echo "ok   policyd stopped: Postfix answers 451 4.3.5 (smtpd_policy_service_default_action), mail waits"
else
  echo "FAIL policyd stopped, expected 451 4.3.5: $out"; fail=1
fi
in_boot systemctl start coexist-policyd.service
bcheck "coexist-policyd.service starts again over its stale sockets" sh -c 'sleep 1; systemctl is-active coexist-policyd.service'

if [ "$have_milter" = yes ]; then
  step "boot: the milter way (smtpd_milters = unix:coexist/milter.sock)"
  in_boot postconf -e 'smtpd_milters = unix:coexist/milter.sock' 'virtual_alias_maps =' 'relay_recipient_maps ='
  in_boot postfix reload 2>/dev/null
  bcheck "systemctl enable --now coexist-milter.service" systemctl enable --now coexist-milter.service
  sleep 1
  bcheck "coexist-milter.service is active" systemctl is-active coexist-milter.service
  echo "     coexist-milter: $(daemon_facts coexist-milter 2>&1 || true)"
  in_boot smtp-source -m 1 -f sender@example.org -t carol@contoso.com 127.0.0.1:25 || true
  if sent_log 'to=<carol@o365\.contoso\.com>.*status=sent \(new-system\)' > /dev/null; then
    echo "ok   the milter rewrote carol@ to the new system"
  else
    echo "FAIL milter routing:"; in_boot journalctl --no-pager -q -t postfix/cleanup -t postfix/discard \
      -t coexist-milter | tail -n 20 | sed 's/^/     /'; fail=1
  fi
  in_boot systemctl stop coexist-milter.service
  out=$(in_boot smtp-source -m 1 -f sender@example.org -t carol@contoso.com 127.0.0.1:25 2>&1 || true)
  if grep -Eq " 4[0-9][0-9] " <<<"$out"; then
    echo "ok   milter stopped: Postfix answers 4xx (milter_default_action = tempfail): ${out##*: }"
  else
    echo "FAIL milter stopped, expected 4xx: $out"; fail=1
  fi
else
  echo "FAIL no coexist-milter in the package: the milter way was not tried"; fail=1
fi

step "boot: power off"
kill -TERM "$nspawn_pid"
wait "$nspawn_pid" 2>/dev/null || true
nspawn_pid=
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
