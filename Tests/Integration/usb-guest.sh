#!/bin/sh
# Runs inside the qemu guest of `make integration-usb` (as twinbrain-usb-test.service, once the
# guest has booted). Installs the package, then waits for the host to hot-plug a USB stick and
# follows it through udev, the mount, learning and an answer, then through its removal.
# Speaks to the host on the second serial port, one line per event ("TWINBRAIN-USB <event> ...");
# the host measures the times between them with its own clock (the guest's runs slow under TCG).
set -u
. /root/usb-test.env   # DEB, DRIVE_LABEL, DRIVE_DOCUMENT, DRIVE_QUESTION, DRIVE_ANSWER
MEDIA=/run/twinbrain/media/$DRIVE_LABEL
API=/run/twinbrain/twinbraind.sock

mark() { echo "TWINBRAIN-USB $*" > /dev/ttyS1; }
fail() {
	mark "FAIL $*"
	journalctl --no-pager -n 60 -u twinbraind -u systemd-udevd > /dev/ttyS1 2>&1
	systemctl poweroff
	exit 1
}
# wait_for SECONDS WHAT COMMAND...
wait_for() {
	limit=$1 what=$2; shift 2
	deadline=$(( $(date +%s) + limit ))
	until "$@" > /dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || fail "$what (waited $limit s)"
		sleep 0.5
	done
}
learned() { curl -sf --max-time 60 --unix-socket "$API" "http://localhost/v1/documents?state=learned" | grep -q "$DRIVE_DOCUMENT"; }
absent() { curl -sf --max-time 60 --unix-socket "$API" "http://localhost/v1/sources" | grep -q '"absent"'; }

mark BOOTED "kernel $(uname -r)"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$DEB" > /root/apt.log 2>&1 || { cat /root/apt.log > /dev/ttyS1; fail "apt-get install"; }
systemctl is-active --quiet twinbraind.socket || fail "twinbraind.socket is not listening"
timeout 600 twinbrain status > /dev/null || fail "the first request (twinbrain status)"
wait_for 600 "twinbraind.service ready" systemctl is-active --quiet twinbraind.service
mark INSTALLED "$(dpkg-query -W -f='${Version}' twinbrain)"

mark PLUG-IN
wait_for 900 "the stick mounted at $MEDIA" findmnt -n "$MEDIA"
source=$(findmnt -n -o SOURCE "$MEDIA")
bus=$(udevadm info -q property -n "$source" | sed -n 's/^ID_BUS=//p')
[ "$bus" = usb ] || fail "$source is not on USB (ID_BUS=$bus)"
findmnt -n -o OPTIONS "$MEDIA" | grep -q '\bro\b' || fail "the stick is not mounted read-only"
mark MOUNTED "$source ID_BUS=$bus $(findmnt -n -o OPTIONS "$MEDIA")"
wait_for 900 "the stick's document learned" learned
mark LEARNED "$DRIVE_DOCUMENT"
answer=$(timeout 900 twinbrain ask --json "$DRIVE_QUESTION") || fail "twinbrain ask"
# The reply's own text (the last "text" key: keys are sorted, the evidence's come first) names the answer,
# and the evidence cites the line that holds it.
echo "$answer" | grep -o '"text":"[^"]*"' | tail -n 1 | grep -q "$DRIVE_ANSWER" || fail "the answer does not use the stick: $answer"
echo "$answer" | grep -q "\"citation\":\"handbook/$DRIVE_DOCUMENT:3\"" || fail "the evidence does not cite the line: $answer"
echo "$answer" | grep -q "$DRIVE_DOCUMENT" || fail "the answer does not cite the document: $answer"
mark ANSWERED "$(echo "$answer" | tr '\n' ' ' | cut -c1-300)"

mark PULL-OUT
wait_for 300 "the mount gone after the stick was pulled" sh -c "! findmnt -n '$MEDIA'"
wait_for 300 "the drive shown absent" absent
learned || fail "pulling the stick forgot its document (it should stay until forgotten)"
mark REMOVED "unmounted, drive absent, document kept"
mark PASS
systemctl poweroff
