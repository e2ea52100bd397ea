#!/bin/bash
# `make integration`: the .deb on a minimal Debian 12 booted with systemd-nspawn, under its real
# systemd and udevd. Installs the package, then checks socket activation and READY, the unit's
# hardening score, that the daemon holds no IP socket, a drive (loop-mounted ext4 image, announced to
# the guest's udevd as a USB disk) mounted by the udev rule and learned, an answer with sources,
# recovery from SIGKILL, from a stalled compute loop (watchdog) and from a damaged store (`twinbrain
# repair`), an upgrade that keeps what was
# learned, and purge. Needs root. The guest's root filesystem is cached in .cache/integration.
#
# Environment: DEB and DEB_UPGRADE (two builds of the package, the second a higher version).
set -euo pipefail
cd "$(dirname "$0")/../.."
. Tests/Integration/common.sh

DEB=$(realpath "${DEB:?the package to test}")
DEB_UPGRADE=$(realpath "${DEB_UPGRADE:?a higher version of it}")
# `systemd-analyze security` exposure the unit must stay at or below (docs/api.md, "Under systemd").
SECURITY_LIMIT=${SECURITY_LIMIT:-1.2}
need_tools "make integration installs debootstrap systemd-container e2fsprogs" debootstrap systemd-nspawn nsenter losetup mkfs.ext4

guest() { nsenter -t "$LEADER" -m -u -i -n -p -- "$@"; }
fail() {
	echo "FAIL: $*" >&2
	if [ -n "${LEADER:-}" ]; then
		guest journalctl --no-pager -n 120 -u twinbraind -u twinbraind.socket -u systemd-udevd >&2 || true
		if [ "${KEEP_ON_FAILURE:-0}" = 1 ]; then
			echo "guest kept for an hour: nsenter -t $LEADER -m -u -i -n -p -- COMMAND" >&2
			sleep 3600
		fi
	fi
	exit 1
}
# Polls a command (quietly) every 0.2 s until it succeeds, at most $1 seconds; a guest command
# that hangs is cut after 15 s.
wait_for() {
	local limit=$1 what=$2; shift 2
	local deadline=$(( $(date +%s) + limit ))
	if [ "$1" = guest ]; then shift; set -- timeout 15 nsenter -t "$LEADER" -m -u -i -n -p -- "$@"; fi
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || fail "$what (waited ${limit} s)"
		sleep 0.2
	done
}

ensure_rootfs

WORK=$(mktemp -d /var/tmp/twinbrain-integration.XXXXXX)
ROOT=$WORK/root
LOOP= NSPAWN= LEADER=
cleanup() {
	if [ -n "$NSPAWN" ] && kill -0 "$NSPAWN" 2>/dev/null; then
		kill "$NSPAWN" 2>/dev/null || true
		for _ in $(seq 150); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$NSPAWN" 2>/dev/null || true
	fi
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

step "guest root and a drive image"
mkdir -p "$ROOT"
tar -C "$ROOT" -xf "$ROOTFS_TAR"
echo twinbrain-guest > "$ROOT/etc/hostname"
cp "$DEB" "$DEB_UPGRADE" "$ROOT/root/"
make_drive_image "$WORK/drive.img"
LOOP=$(losetup -f --show "$WORK/drive.img")
echo "drive image on $LOOP"

step "boot the guest (systemd-nspawn)"
# A network namespace of its own, as a box has: udevd may then broadcast events to libudev
# listeners (twinbraind's drive monitor), which needs CAP_NET_ADMIN over the namespace.
SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 systemd-nspawn -q -D "$ROOT" --keep-unit --register=no -b --private-network \
	--bind=/dev/loop-control --bind="$LOOP" > "$WORK/console.log" 2>&1 &
NSPAWN=$!
deadline=$(( $(date +%s) + 60 ))
# The guest's PID 1 is the first systemd below nspawn (readlink /proc/PID/root says "/" across
# mount namespaces, so the process tree is what tells).
below_nspawn() {
	local p=$1
	while [ "$p" -gt 1 ]; do
		p=$(awk '{ print $4 }' "/proc/$p/stat" 2>/dev/null) || return 1
		[ "$p" = "$NSPAWN" ] && return 0
	done
	return 1
}
until [ -n "$LEADER" ]; do
	for pid in $(pgrep -x systemd || true); do
		below_nspawn "$pid" && { LEADER=$pid; break; }
	done
	[ "$(date +%s)" -lt "$deadline" ] || { cat "$WORK/console.log" >&2; fail "the guest's systemd did not start"; }
	kill -0 "$NSPAWN" 2>/dev/null || { cat "$WORK/console.log" >&2; fail "systemd-nspawn exited"; }
	sleep 0.2
done
state=$(guest timeout 60 systemctl is-system-running --wait || true)
echo "guest systemd (pid $LEADER on the host): $state"
case "$state" in running|degraded) ;; *) fail "the guest did not finish booting: $state" ;; esac

step "apt-get install the package"
t0=$(now)
guest env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "/root/$(basename "$DEB")" > "$WORK/apt.log" 2>&1 \
	|| { cat "$WORK/apt.log" >&2; fail "apt-get install"; }
guest systemctl is-active --quiet twinbraind.socket || fail "twinbraind.socket is not listening after install"
guest systemctl is-enabled --quiet twinbraind.socket || fail "twinbraind.socket is not enabled"
guest systemctl is-active --quiet twinbraind.service && fail "the service runs before any request (it should be socket-activated)"
guest timeout 60 twinbrain status > "$WORK/status.txt" || { cat "$WORK/status.txt" >&2; fail "the first request (twinbrain status)"; }
# Type=notify: "active" once the daemon said READY=1 (model loaded, socket served).
wait_for 30 "the first request starting twinbraind.service up to READY" guest systemctl is-active --quiet twinbraind.service
install_to_ready=$(elapsed "$t0")
[ "$(guest systemctl show -p Type --value twinbraind.service)" = notify ] || fail "the service is not Type=notify"
echo "install to a ready, socket-activated service: ${install_to_ready} s"

step "hardening"
guest systemd-analyze security --no-pager twinbraind.service > "$WORK/security.txt" 2>&1 || true
exposure=$(sed -n 's/.*Overall exposure level for twinbraind.service: \([0-9.]*\).*/\1/p' "$WORK/security.txt")
[ -n "$exposure" ] || { cat "$WORK/security.txt" >&2; fail "no exposure level from systemd-analyze security"; }
awk -v e="$exposure" -v l="$SECURITY_LIMIT" 'BEGIN { exit !(e <= l) }' \
	|| { cat "$WORK/security.txt" >&2; fail "exposure $exposure is above the documented $SECURITY_LIMIT"; }
echo "systemd-analyze security: $exposure (limit $SECURITY_LIMIT)"
pid=$(guest systemctl show -p MainPID --value twinbraind.service)
sockets=$(guest sh -c "ls -l /proc/$pid/fd 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]/\1/p'")
ip=0
for inode in $sockets; do
	if guest sh -c "cat /proc/$pid/net/tcp /proc/$pid/net/tcp6 /proc/$pid/net/udp /proc/$pid/net/udp6 /proc/$pid/net/raw /proc/$pid/net/raw6 2>/dev/null" \
		| awk -v i="$inode" '$10 == i { found = 1 } END { exit !found }'; then
		ip=$((ip + 1))
	fi
done
[ "$ip" -eq 0 ] || fail "twinbraind holds $ip IP sockets"
families=$(guest systemctl show -p RestrictAddressFamilies --value twinbraind.service)
deny=$(guest systemctl show -p IPAddressDeny --value twinbraind.service)
echo "sockets: $(echo $sockets | wc -w), none of them IP; RestrictAddressFamilies=$families; IPAddressDeny=$deny"
case "$families" in *AF_INET*) fail "the unit allows IP address families" ;; esac

step "plug in the drive (udev add → rule → systemd-mount → learning)"
# A loop device is not on USB: the test tags this one as such before the package's rule runs.
cat > "$ROOT/etc/udev/rules.d/90-twinbrain-test-usb.rules" <<RULE
SUBSYSTEM=="block", KERNEL=="$(basename "$LOOP")", ENV{ID_BUS}="usb"
RULE
guest udevadm control --reload
t0=$(now)
guest udevadm trigger --action=add "/sys/class/block/$(basename "$LOOP")"
wait_for 30 "the drive mounted under /run/twinbrain/media" guest findmnt -n /run/twinbrain/media/$DRIVE_LABEL
guest findmnt -n -o OPTIONS /run/twinbrain/media/$DRIVE_LABEL | grep -q '\bro\b' || fail "the drive is not mounted read-only"
learned() { guest curl -sf --max-time 10 --unix-socket /run/twinbrain/twinbraind.sock "http://localhost/v1/documents?state=learned" | grep -q "$DRIVE_DOCUMENT"; }
wait_for 60 "the drive's document learned" learned
usb_to_usable=$(elapsed "$t0")
echo "USB add to the first document usable: ${usb_to_usable} s"
ask() { guest timeout 60 twinbrain ask --json "$DRIVE_QUESTION"; }
answer=$(ask) || fail "twinbrain ask"
# The reply's own text (the last "text" key: keys are sorted, the evidence's come first) names the answer,
# and the evidence cites the line that holds it.
echo "$answer" | grep -o '"text":"[^"]*"' | tail -n 1 | grep -q "$DRIVE_ANSWER" || fail "the answer does not use the drive: $answer"
echo "$answer" | grep -q "\"citation\":\"handbook/$DRIVE_DOCUMENT:3\"" || fail "the evidence does not cite the line: $answer"
echo "$answer" | grep -q "$DRIVE_DOCUMENT" || fail "the answer does not cite the document: $answer"
echo "answered from the drive, with its source"

step "SIGKILL: systemd restarts the daemon, nothing is lost"
old=$(guest systemctl show -p MainPID --value twinbraind.service)
guest systemctl kill -s KILL twinbraind.service
restarted() { new=$(guest systemctl show -p MainPID --value twinbraind.service); [ "$new" != 0 ] && [ "$new" != "$old" ] && guest systemctl is-active --quiet twinbraind.service; }
wait_for 30 "twinbraind restarted after SIGKILL" restarted
wait_for 30 "the restarted daemon answers" guest twinbrain status
learned || fail "the learned document is gone after the restart"
ask | grep -q "$DRIVE_DOCUMENT" || fail "the answer after the restart does not cite the document"
echo "restarted (pid $old → $(guest systemctl show -p MainPID --value twinbraind.service)); the document is still learned"

step "watchdog: a stalled compute loop gets the daemon restarted"
mkdir -p "$ROOT/etc/systemd/system/twinbraind.service.d"
cat > "$ROOT/etc/systemd/system/twinbraind.service.d/watchdog-test.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=/usr/bin/twinbraind --config /etc/twinbrain/twinbraind.conf --debug-stall
WatchdogSec=3s
UNIT
guest systemctl daemon-reload
guest systemctl restart twinbraind.service
wait_for 30 "the daemon with the stall hook answers" guest twinbrain status
before=$(guest systemctl show -p NRestarts --value twinbraind.service)
guest curl -sf --max-time 10 --unix-socket /run/twinbrain/twinbraind.sock -X POST "http://localhost/v1/debug/stall?seconds=30" > /dev/null \
	|| fail "POST /v1/debug/stall"
watchdog_restart() { [ "$(guest systemctl show -p NRestarts --value twinbraind.service)" -gt "$before" ]; }
wait_for 30 "systemd restarting the stalled daemon" watchdog_restart
after=$(guest systemctl show -p NRestarts --value twinbraind.service)
guest journalctl --no-pager -u twinbraind | grep -q 'Watchdog timeout' || fail "the journal does not show the watchdog timeout"
wait_for 30 "the daemon answers after the watchdog restart" guest twinbrain status
rm -r "$ROOT/etc/systemd/system/twinbraind.service.d"
guest systemctl daemon-reload
guest systemctl restart twinbraind.service
wait_for 30 "the daemon answers again" guest twinbrain status
echo "watchdog timeout → restarted (NRestarts $before → $after)"

step "a damaged store: the daemon waits for twinbrain repair, which rebuilds it; systemd restarts it"
guest systemctl stop twinbraind.service
# Garbage over page 2 (the migrations table, the first one created): the integrity check fails,
# nothing the box learned is lost.
dd if=/dev/urandom of="$ROOT/var/lib/twinbrain/twinbrain.sqlite" bs=4096 seek=1 count=1 conv=notrunc status=none
before=$(guest systemctl show -p NRestarts --value twinbraind.service)
damaged() { local out; out=$(guest timeout 15 twinbrain status 2>&1) || true; echo "$out" | grep -q "twinbrain repair"; }
wait_for 30 "the daemon waiting in repair mode (socket activation)" damaged
guest systemctl is-active --quiet twinbraind.service || fail "the daemon in repair mode is not active"
repaired=$(guest timeout 180 twinbrain repair 2>&1) || fail "twinbrain repair: $repaired"
echo "$repaired" | grep -q "no learned document was lost" || fail "the repair lost the document: $repaired"
echo "$repaired" | grep -q "twinbraind serves again" || fail "the repaired daemon does not serve: $repaired"
[ "$(guest systemctl show -p NRestarts --value twinbraind.service)" -gt "$before" ] || fail "systemd did not restart the repaired daemon"
ls "$ROOT/var/lib/twinbrain/" | grep -q '^twinbrain.sqlite.damaged-' || fail "the damaged file was not kept"
learned || fail "the repair lost the learned document"
answers_from_drive() { ask | grep -q "$DRIVE_DOCUMENT"; }
wait_for 60 "the repaired box answering from the drive (passages cut again)" answers_from_drive
echo "repair mode → twinbrain repair → restarted by systemd; the document still answers"

step "upgrade to $(basename "$DEB_UPGRADE")"
old=$(guest systemctl show -p MainPID --value twinbraind.service)
guest env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "/root/$(basename "$DEB_UPGRADE")" > "$WORK/apt.log" 2>&1 \
	|| { cat "$WORK/apt.log" >&2; fail "the upgrade"; }
[ "$(guest systemctl show -p MainPID --value twinbraind.service)" != "$old" ] || fail "the upgrade did not restart the daemon"
wait_for 30 "the upgraded daemon answers" guest twinbrain status
learned || fail "the upgrade lost the learned document"
ask | grep -q "$DRIVE_DOCUMENT" || fail "the answer after the upgrade does not cite the document"
echo "upgraded to $(guest dpkg-query -W -f='${Version}' twinbrain); the knowledge stayed"

step "remove keeps the state, purge deletes it"
guest env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q twinbrain > "$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; fail "apt-get remove"; }
guest test -f /var/lib/twinbrain/twinbrain.sqlite || fail "remove deleted the state"
guest systemctl is-active --quiet twinbraind.socket && fail "the socket still listens after remove"
guest env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q twinbrain > "$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; fail "apt-get purge"; }
guest test -e /var/lib/twinbrain && fail "purge left /var/lib/twinbrain"
guest test -e /etc/twinbrain && fail "purge left /etc/twinbrain"
guest test -f "/run/twinbrain/media/$DRIVE_LABEL/handbook/$DRIVE_DOCUMENT" || fail "purge touched the mounted drive"
echo "removed (state kept), purged (state gone)"

printf '\nintegration: all checks passed; install→ready %s s, USB add→usable %s s, security %s\n' \
	"$install_to_ready" "$usb_to_usable" "$exposure"
