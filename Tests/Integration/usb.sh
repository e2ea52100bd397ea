#!/bin/bash
# `make integration-usb`: the real USB path, once. qemu (software emulation: KVM does not work on
# these machines) boots Debian 12's own kernel on the cached root with the package; when it is
# installed, a usb-storage stick is hot-plugged through qemu's monitor (QMP) onto an emulated xHCI
# controller. The kernel's add event, udev's rules (ID_BUS=usb from the real USB stack, no test
# rule), the package's mount, scanning, learning and an answer with its source follow exactly as
# on a box; then the stick is pulled (device_del). The guest reports each step on its second
# serial port; times are taken here, on the host's clock. Needs root. Slow (TCG): not in CI.
#
# Environment: DEB (the package to test); TIMEOUT (seconds for the whole run, default 2400).
set -euo pipefail
cd "$(dirname "$0")/../.."
. Tests/Integration/common.sh

DEB=$(realpath "${DEB:?the package to test}")
VM_ROOTFS_TAR=$CACHE/bookworm-vm-rootfs.tar
TIMEOUT=${TIMEOUT:-2400}
need_tools "make integration-usb installs qemu-system-x86 debootstrap e2fsprogs" qemu-system-x86_64 debootstrap mkfs.ext4 python3
ensure_rootfs

# The same root plus Debian's kernel and an initramfs, cached too.
if [ ! -f "$VM_ROOTFS_TAR" ]; then
	step "add Debian's kernel to the guest root (cached in $VM_ROOTFS_TAR)"
	build=$CACHE/vm-rootfs.build
	rm -rf "$build" && mkdir -p "$build"
	tar -C "$build" -xf "$ROOTFS_TAR"
	cp /etc/resolv.conf "$build/etc/resolv.conf"
	mount -t proc proc "$build/proc"
	trap 'umount "$build/proc" 2>/dev/null || true' EXIT
	chroot "$build" apt-get update -q
	chroot "$build" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends linux-image-amd64 initramfs-tools
	chroot "$build" apt-get clean
	umount "$build/proc"
	trap - EXIT
	tar -C "$build" -cf "$VM_ROOTFS_TAR.tmp" .
	mv "$VM_ROOTFS_TAR.tmp" "$VM_ROOTFS_TAR"
	rm -rf "$build"
fi

WORK=$(mktemp -d /var/tmp/twinbrain-usb.XXXXXX)
QEMU=
cleanup() {
	if [ -n "$QEMU" ] && kill -0 "$QEMU" 2>/dev/null; then kill "$QEMU" 2>/dev/null || true; sleep 1; kill -9 "$QEMU" 2>/dev/null || true; fi
	[ "${KEEP:-0}" = 1 ] && { echo "kept $WORK" >&2; return; }
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	echo "--- guest console (last lines)" >&2; tail -n 40 "$WORK/console.log" >&2 || true
	echo "--- guest reports" >&2; cat "$WORK/reports.log" >&2 || true
	exit 1
}

step "guest disk, with the package and the test that runs at boot"
root=$WORK/root
mkdir -p "$root"
tar -C "$root" -xf "$VM_ROOTFS_TAR"
echo twinbrain-usb > "$root/etc/hostname"
cp "$DEB" "$root/root/"
cat > "$root/root/usb-test.env" <<ENV
DEB=/root/$(basename "$DEB")
DRIVE_LABEL=$DRIVE_LABEL
DRIVE_DOCUMENT=$DRIVE_DOCUMENT
DRIVE_QUESTION="$DRIVE_QUESTION"
DRIVE_ANSWER=$DRIVE_ANSWER
ENV
install -m 755 Tests/Integration/usb-guest.sh "$root/root/usb-guest.sh"
cat > "$root/etc/systemd/system/twinbrain-usb-test.service" <<'UNIT'
[Unit]
Description=twinbrain USB integration test (make integration-usb)
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/root/usb-guest.sh
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
UNIT
ln -s /etc/systemd/system/twinbrain-usb-test.service "$root/etc/systemd/system/multi-user.target.wants/twinbrain-usb-test.service"
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
cp "$kernel" "$WORK/vmlinuz"
cp "$initrd" "$WORK/initrd.img"
truncate -s 3G "$WORK/root.img"
mkfs.ext4 -q -L twinbrain-root -d "$root" "$WORK/root.img"
rm -rf "$root"
make_drive_image "$WORK/stick.img"

# A qemu monitor command through QMP (its JSON protocol on a Unix socket); fails on an error.
monitor() {
	python3 - "$WORK/qmp.sock" "$*" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
replies = s.makefile("r")
def call(command, **arguments):
    s.sendall(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
    while True:
        reply = json.loads(replies.readline())
        if "return" in reply or "error" in reply:   # events may come first
            return reply
replies.readline()                                  # the greeting
call("qmp_capabilities")
reply = call("human-monitor-command", **{"command-line": sys.argv[2]})
text = reply.get("return", "") if "return" in reply else reply["error"]["desc"]
print(f"(qemu) {sys.argv[2]}" + (f": {text.strip()}" if text.strip() else ""))
sys.exit(1 if "error" in reply or "rror" in text else 0)
PY
}
# wait_report EVENT SECONDS: until the guest reports EVENT (or FAIL, or qemu ends).
wait_report() {
	local event=$1 deadline=$(( $(date +%s) + $2 ))
	until grep -q "^TWINBRAIN-USB $event\b" "$WORK/reports.log" 2>/dev/null; do
		grep -q '^TWINBRAIN-USB FAIL' "$WORK/reports.log" 2>/dev/null && fail "the guest reports a failure"
		kill -0 "$QEMU" 2>/dev/null || fail "qemu exited before the guest reported $event"
		[ "$(date +%s)" -lt "$deadline" ] || fail "no $event from the guest in $2 s"
		sleep 0.2
	done
	sed -n "s/^TWINBRAIN-USB $event *//p" "$WORK/reports.log" | head -n 1
}

step "boot (qemu, TCG)"
t0=$(now)
qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 3072 -display none -no-reboot -nic none \
	-kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 systemd.show_status=0" \
	-drive file="$WORK/root.img",if=virtio,format=raw \
	-device qemu-xhci,id=xhci \
	-serial file:"$WORK/console.log" -serial file:"$WORK/reports.log" \
	-qmp unix:"$WORK/qmp.sock",server=on,wait=off &
QEMU=$!
kernel=$(wait_report BOOTED 900)
echo "booted ($kernel) after $(elapsed "$t0") s"
t0=$(now)
version=$(wait_report INSTALLED 1200)
echo "installed $version, socket-activated and ready after $(elapsed "$t0") s"

step "plug in the stick (QMP: device_add usb-storage on the xHCI bus)"
wait_report PLUG-IN 60 > /dev/null
t0=$(now)
monitor "drive_add 0 if=none,id=stick,file=$WORK/stick.img,format=raw" || fail "drive_add"
monitor "device_add usb-storage,bus=xhci.0,drive=stick,id=stick0,removable=on" || fail "device_add"
mounted=$(wait_report MOUNTED 900)
echo "mounted ($mounted) after $(elapsed "$t0") s"
wait_report LEARNED 900 > /dev/null
usb_to_usable=$(elapsed "$t0")
echo "USB add to the first document usable: $usb_to_usable s"
t1=$(now)
answer=$(wait_report ANSWERED 900)
echo "answered with its source after $(elapsed "$t1") s: $answer"

step "pull the stick out (QMP: device_del)"
wait_report PULL-OUT 60 > /dev/null
t0=$(now)
monitor "device_del stick0" || fail "device_del"
wait_report REMOVED 600 > /dev/null
usb_removed=$(elapsed "$t0")
echo "unmounted and the drive absent $usb_removed s after the pull; its document stays learned"
wait_report PASS 60 > /dev/null
for _ in $(seq 150); do kill -0 "$QEMU" 2>/dev/null || break; sleep 0.2; done

printf '\nintegration-usb: all checks passed under qemu TCG; USB add→usable %s s, pull→absent %s s\n' "$usb_to_usable" "$usb_removed"
