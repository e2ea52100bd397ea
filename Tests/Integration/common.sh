# Shared by the integration tests (sourced, not run): messages, timing, the cached Debian 12 root
# and the drive image both tests plug in.

CACHE=$PWD/.cache/integration
ROOTFS_TAR=$CACHE/bookworm-rootfs.tar
GUEST_PACKAGES=systemd,systemd-sysv,udev,dbus,curl,ca-certificates,libopenblas0,libsqlite3-0,libsystemd0,libudev1,poppler-utils

step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# need_tools "what installs them" TOOL...
need_tools() {
	local installs=$1; shift
	[ "$(id -u)" -eq 0 ] || { echo "this test needs root" >&2; exit 1; }
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "$tool is missing ($installs)" >&2; exit 1; }
	done
}

# A minimal Debian 12 root as a tarball, built once per machine (debootstrap takes a few minutes).
ensure_rootfs() {
	[ -f "$ROOTFS_TAR" ] && return
	step "debootstrap a minimal Debian 12 (cached in $ROOTFS_TAR)"
	mkdir -p "$CACHE"
	rm -rf "$CACHE/rootfs.build"
	debootstrap --variant=minbase --include="$GUEST_PACKAGES" bookworm "$CACHE/rootfs.build" http://deb.debian.org/debian
	chroot "$CACHE/rootfs.build" apt-get clean
	tar -C "$CACHE/rootfs.build" -cf "$ROOTFS_TAR.tmp" .
	mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
	rm -rf "$CACHE/rootfs.build"
}

# make_drive_image IMAGE: a small ext4 "USB stick" labelled HANDBOOK with one document whose
# facts the model cannot know (the question and the expected answer are below).
DRIVE_LABEL=HANDBOOK
DRIVE_DOCUMENT=facilities.txt
DRIVE_QUESTION="Who descales the Zorblat coffee machine?"
DRIVE_ANSWER=Bogdan
make_drive_image() {
	local image=$1 tree
	tree=$(mktemp -d)
	mkdir -p "$tree/handbook"
	cat > "$tree/handbook/$DRIVE_DOCUMENT" <<'TEXT'
Facilities handbook, floor two.

The Zorblat coffee machine on floor two is descaled by Bogdan Ilic every second Tuesday at seven,
using citric acid only. Report faults in the kitchen log; never open the boiler yourself.
TEXT
	truncate -s 64M "$image"
	mkfs.ext4 -q -L "$DRIVE_LABEL" -d "$tree" "$image"
	rm -rf "$tree"
}
