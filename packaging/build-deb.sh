#!/bin/bash
# `make deb`: the appliance's Debian package from this checkout: static-stdlib release binaries
# (stripped), the default model with its digest, units, udev rule, sysusers/tmpfiles, the default
# configuration as a conffile, man pages from --help, shell completions; Depends computed by
# dpkg-shlibdeps; checked by lintian.
#
# Environment: VERSION (default: the one in Sources/ControlAPI/Version.swift), MODEL (the GGUF
# file), BIN (directory of the static binaries), OUT (where the .deb goes), LINTIAN=0 to skip lintian
# (a second build of the same files for an upgrade test).
set -euo pipefail
cd "$(dirname "$0")/.."

version=${VERSION:-$(sed -n 's/^public let twinbrainVersion = "\(.*\)"$/\1/p' Sources/ControlAPI/Version.swift)}
model=${MODEL:-.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf}
bin=${BIN:-.build/static/release}
out=${OUT:-.build/deb}
[ -n "$version" ] || { echo "no version found in Sources/ControlAPI/Version.swift" >&2; exit 1; }
[ -f "$model" ] || { echo "no model at $model: run \`make model\`" >&2; exit 1; }
for b in twinbraind twinbrain twinbrain-extract; do
	[ -x "$bin/$b" ] || { echo "no $bin/$b: build it with --static-swift-stdlib (make deb does)" >&2; exit 1; }
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/twinbrain-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
umask 022

install -d "$root/usr/bin" "$root/usr/lib/twinbrain" "$root/usr/share/twinbrain/models" \
	"$root/lib/systemd/system" "$root/lib/udev/rules.d" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d" \
	"$root/etc/twinbrain" "$root/usr/share/doc/twinbrain" "$root/usr/share/man/man1" "$root/usr/share/man/man8" \
	"$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
	"$root/usr/share/fish/vendor_completions.d" "$root/DEBIAN"

# Binaries: the Swift runtime is linked in, so only Debian libraries are needed on the box.
install -m 755 "$bin/twinbraind" "$bin/twinbrain" "$root/usr/bin/"
install -m 755 "$bin/twinbrain-extract" systemd/twinbrain-mount "$root/usr/lib/twinbrain/"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	"$root/usr/bin/twinbraind" "$root/usr/bin/twinbrain" "$root/usr/lib/twinbrain/twinbrain-extract"

# The model and its digest: twinbraind checks the digest before loading. Beside them the token
# memory's fitted keyspace for that file (packaging/models/<sha256>.keyspace.json, `make gate`).
model_name=$(basename "$model")
install -m 644 "$model" "$root/usr/share/twinbrain/models/$model_name"
(cd "$root/usr/share/twinbrain/models" && sha256sum "$model_name" > "$model_name.sha256")
model_sha=$(cut -d' ' -f1 "$root/usr/share/twinbrain/models/$model_name.sha256")
if [ -f "packaging/models/$model_sha.keyspace.json" ]; then
	install -m 644 "packaging/models/$model_sha.keyspace.json" "$root/usr/share/twinbrain/models/"
else
	echo "note: no fitted keyspace for $model_name (packaging/models/$model_sha.keyspace.json): the token memory will be off" >&2
fi

# Public calibration text (man pages, licences): the token memory's keyspace is fitted on it for a
# model an administrator brings without a fit (never on customer data).
for part in memory related unrelated; do
	install -d "$root/usr/share/twinbrain/calibration/$part"
	install -m 644 packaging/calibration/$part/* "$root/usr/share/twinbrain/calibration/$part/"
done

install -m 644 systemd/twinbraind.service systemd/twinbraind.socket "$root/lib/systemd/system/"
install -m 644 systemd/99-twinbrain-usb.rules "$root/lib/udev/rules.d/"
install -m 644 systemd/sysusers.d/twinbrain.conf "$root/usr/lib/sysusers.d/twinbrain.conf"
install -m 644 systemd/tmpfiles.d/twinbrain.conf "$root/usr/lib/tmpfiles.d/twinbrain.conf"
install -m 644 systemd/twinbraind.conf "$root/etc/twinbrain/twinbraind.conf"

# Documentation, changelog (a native package), man pages from --help, completions.
install -m 644 packaging/debian/copyright "$root/usr/share/doc/twinbrain/copyright"
install -m 644 docs/api.md docs/operations.md "$root/usr/share/doc/twinbrain/"
{
	echo "twinbrain ($version) bookworm; urgency=medium"
	echo
	echo "  * twinbrain $version; see /usr/share/doc/twinbrain/operations.md."
	echo
	echo " -- twinbrain developers <developers@twinbrain.invalid>  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n > "$root/usr/share/doc/twinbrain/changelog.gz"
help2man --no-info --section 1 --version-string "$version" --name "ask the twinbrain appliance, manage what it learned" \
	"$root/usr/bin/twinbrain" | gzip -9n > "$root/usr/share/man/man1/twinbrain.1.gz"
help2man --no-info --section 8 --version-string "$version" --name "the twinbrain appliance daemon" \
	"$root/usr/bin/twinbraind" | gzip -9n > "$root/usr/share/man/man8/twinbraind.8.gz"
# bash-completion sources the file: no interpreter line.
"$root/usr/bin/twinbrain" --generate-completion-script bash | sed '1{/^#!/d}' > "$root/usr/share/bash-completion/completions/twinbrain"
"$root/usr/bin/twinbrain" --generate-completion-script zsh > "$root/usr/share/zsh/vendor-completions/_twinbrain"
"$root/usr/bin/twinbrain" --generate-completion-script fish > "$root/usr/share/fish/vendor_completions.d/twinbrain.fish"
chmod 644 "$root"/usr/share/*-completion*/completions/* "$root"/usr/share/zsh/vendor-completions/* "$root"/usr/share/fish/vendor_completions.d/*

# Depends: what the binaries link, by dpkg-shlibdeps. libopenblas.so.0 comes through Debian's
# alternatives, which dpkg-shlibdeps cannot follow: the package that provides it is named.
mkdir -p "$stage/shlibs/debian"
printf 'Source: twinbrain\n\nPackage: twinbrain\nArchitecture: amd64\n' > "$stage/shlibs/debian/control"
shlibs=$(cd "$stage/shlibs" && dpkg-shlibdeps -O --ignore-missing-info -xlibopenblas0-pthread -xlibopenblas0 \
	-e"$root/usr/bin/twinbraind" -e"$root/usr/bin/twinbrain" -e"$root/usr/lib/twinbrain/twinbrain-extract" 2>/dev/null \
	| sed -n 's/^shlibs:Depends=//p')
depends="$shlibs, libopenblas0, systemd (>= 252), init-system-helpers (>= 1.54~)"

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$installed_size/" -e "s/@DEPENDS@/$depends/" \
	packaging/debian/control.in > "$root/DEBIAN/control"
install -m 644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
install -m 755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/twinbrain_${version}_amd64.deb"
dpkg-deb -Zgzip --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
grep '^Depends:' "$root/DEBIAN/control" >&2

if [ "${LINTIAN:-1}" != 0 ] && command -v lintian >/dev/null; then
	# Errors fail the build; warnings are printed. The overrides say why each is accepted.
	lintian --fail-on error --suppress-tags-from-file packaging/lintian-suppressed "$deb" >&2
fi
