#!/bin/sh
# make test-arm64: trio_uring on Debian's arm64 kernel under qemu-system-aarch64
# (full-system TCG emulation: qemu's user-mode emulation has no io_uring).
#
# Everything it downloads comes from Debian's registry and PyPI, and is cached
# outside the repository, in $ARM64_CACHE (default ~/.cache/trio_uring/arm64):
#   apt/             a private apt configuration for arm64 (the host's is untouched)
#   kernel/          linux-image-*-arm64 (the linux-image-arm64 metapackage's choice), unpacked
#   rootfs.foreign/  debootstrap --foreign --arch=arm64: the package set, resolved and downloaded
#   rootfs.cpio      those packages unpacked (dpkg-deb -x, no maintainer scripts: see below)
#   deps-<sum>.cpio  the test dependencies: aarch64/cp311 wheels from PyPI, installed by the
#                    host's pip with --platform/--target (pip under TCG would take hours here)
# Each run boots the kernel with rootfs.cpio + deps + this checkout as its initramfs
# (the root file system is a tmpfs, so no block or network driver is needed) and
# runs .ci/arm64/init.sh: python -m trio_uring, our suite, trio's suite.
#
# Knobs (environment): ARM64_TESTS (pytest arguments for our suite, empty: skip it),
# ARM64_TRIO (tests/conformance/run.py arguments, empty: skip it), ARM64_SMP,
# ARM64_MEM, ARM64_TIMEOUT (seconds for the VM), ARM64_SUITE (Debian release).
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${ARM64_CACHE:-$HOME/.cache/trio_uring/arm64}
SUITE=${ARM64_SUITE:-bookworm}
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
SMP=${ARM64_SMP:-2}
MEM=${ARM64_MEM:-4G}
TIMEOUT=${ARM64_TIMEOUT:-10800}
# (faulthandler_timeout: see tools/kernel_guest.py; pyproject's 120 s is a quiet machine's)
ARM64_TESTS=${ARM64_TESTS-"-q -p no:cacheprovider -o faulthandler_timeout=1800 tests"}
ARM64_TRIO=${ARM64_TRIO-""}
# the guest's Python (bookworm: 3.11), for the wheels
PYVER=${ARM64_PYVER:-3.11}
LOG=${ARM64_LOG:-$CACHE/run.log}
mkdir -p "$CACHE"
log() { echo "== [$(date -u +%H:%M:%S)] $*"; }

for tool in qemu-system-aarch64:qemu-system-arm debootstrap:debootstrap cpio:cpio depmod:kmod python3:python3; do
    if ! command -v "${tool%%:*}" >/dev/null; then
        echo "missing ${tool%%:*}: apt-get install qemu-system-arm debootstrap cpio kmod python3-venv" >&2
        exit 2
    fi
done

# ---- the kernel, from the distribution's registry, through a private apt dir
APT="$CACHE/apt"
aptopts() {
    echo "-o Dir::Etc=$APT/etc -o Dir::Etc::SourceList=$APT/etc/sources.list" \
        "-o Dir::Etc::SourceParts=$APT/etc/sources.list.d -o Dir::Etc::Preferences=$APT/etc/preferences" \
        "-o Dir::Etc::PreferencesParts=$APT/etc/preferences.d -o Dir::State=$APT/state -o Dir::Cache=$APT/cache" \
        "-o Dir::State::status=$APT/state/status -o APT::Architecture=arm64 -o APT::Architectures=arm64" \
        "-o Debug::NoLocking=1 -o APT::Sandbox::User=root"
}
if [ ! -e "$CACHE/kernel/.done" ]; then
    log "kernel: linux-image-arm64 from $MIRROR $SUITE"
    mkdir -p "$APT/etc/sources.list.d" "$APT/etc/preferences.d" "$APT/state/lists/partial" "$APT/cache/archives/partial"
    : > "$APT/state/status"
    cat > "$APT/etc/sources.list" <<SRC
deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main
SRC
    # shellcheck disable=SC2046
    apt-get $(aptopts) -q update
    # shellcheck disable=SC2046
    pkg=$(apt-cache $(aptopts) depends linux-image-arm64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-arm64\)$/\1/p' | head -1)
    [ -n "$pkg" ] || { echo "cannot resolve linux-image-arm64" >&2; exit 1; }
    rm -rf "$CACHE/kernel" "$CACHE/debs" && mkdir -p "$CACHE/debs"
    # shellcheck disable=SC2046
    (cd "$CACHE/debs" && apt-get $(aptopts) -q download "$pkg")
    dpkg-deb -x "$CACHE"/debs/"$pkg"_*.deb "$CACHE/kernel"
    echo "$pkg" > "$CACHE/kernel/.done"
fi
KVER=$(ls "$CACHE/kernel/lib/modules")
VMLINUZ="$CACHE/kernel/boot/vmlinuz-$KVER"

# ---- the userland: Debian's arm64 packages, resolved and downloaded by
# debootstrap --foreign (no binfmt needed), then every one unpacked on the host.
# No maintainer script runs (that is debootstrap's second stage, which under TCG
# on a busy 2-core host did not finish configuring the base system in 12
# minutes); the few files the scripts would write are written below.
PACKAGES=python3,python3-venv,libatomic1,ca-certificates,kmod,iproute2,netbase,procps
if [ "$(cat "$CACHE/rootfs.foreign/.done" 2>/dev/null)" != "$SUITE $PACKAGES" ]; then
    log "debootstrap --foreign --arch=arm64 $SUITE"
    rm -rf "$CACHE/rootfs.foreign" "$CACHE/rootfs.cpio"
    debootstrap --foreign --arch=arm64 --variant=minbase --include="$PACKAGES" \
        "$SUITE" "$CACHE/rootfs.foreign" "$MIRROR"
    echo "$SUITE $PACKAGES" > "$CACHE/rootfs.foreign/.done"
fi

# the kernel opens /dev/console before running /init (devtmpfs comes later)
consoles() {
    mkdir -p "$1/dev"
    [ -c "$1/dev/console" ] || mknod -m 600 "$1/dev/console" c 5 1
    [ -c "$1/dev/null" ] || mknod -m 666 "$1/dev/null" c 1 3
}

# only the modules the VM loads (the initramfs is unpacked at every boot, and
# that is slow under TCG): entropy
MODULES="virtio_pci virtio-rng"
modules() {
    [ -e "$CACHE/kernel/lib/modules/$KVER/modules.dep" ] || depmod -b "$CACHE/kernel" "$KVER"
    mkdir -p "$1/usr/lib/modules/$KVER"
    cp "$CACHE/kernel/lib/modules/$KVER"/modules.builtin* "$CACHE/kernel/lib/modules/$KVER/modules.order" \
        "$1/usr/lib/modules/$KVER/"
    for m in $MODULES; do
        modprobe -d "$CACHE/kernel" -S "$KVER" --show-depends "$m"
    done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r ko; do
        rel=${ko#"$CACHE/kernel/lib/modules/$KVER/"}
        mkdir -p "$1/usr/lib/modules/$KVER/$(dirname "$rel")"
        cp "$ko" "$1/usr/lib/modules/$KVER/$rel"
    done
    depmod -b "$1" "$KVER"
}

cpio_of() {  # cpio_of DIR > FILE
    (cd "$1" && find . | cpio -o -H newc --quiet)
}

if [ ! -e "$CACHE/rootfs.cpio" ]; then
    log "unpacking $(ls "$CACHE"/rootfs.foreign/var/cache/apt/archives/*.deb | wc -l) packages"
    root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    chmod 755 "$root"
    # merged /usr, as debootstrap lays it out
    mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib"
    for d in bin sbin lib; do ln -s "usr/$d" "$root/$d"; done
    for deb in "$CACHE"/rootfs.foreign/var/cache/apt/archives/*.deb; do
        dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$root"
    done
    rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" "$root/usr/share/info"
    mkdir -p "$root/proc" "$root/sys" "$root/tmp" "$root/root" "$root/run" "$root/etc"
    chmod 1777 "$root/tmp"
    # what base-passwd's, netbase's and libc-bin's maintainer scripts would write
    cp "$root/usr/share/base-passwd/passwd.master" "$root/etc/passwd"
    cp "$root/usr/share/base-passwd/group.master" "$root/etc/group"
    printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
    echo arm64-vm > "$root/etc/hostname"
    if [ -f "$root/usr/share/libc-bin/nsswitch.conf" ]; then
        cp "$root/usr/share/libc-bin/nsswitch.conf" "$root/etc/nsswitch.conf"
    fi
    consoles "$root"
    modules "$root"
    cpio_of "$root" > "$CACHE/rootfs.cpio.tmp"
    mv "$CACHE/rootfs.cpio.tmp" "$CACHE/rootfs.cpio"
    rm -rf "$root"
fi

# ---- the Python side, from PyPI: a pip on the host, for the guest's platform
HOSTVENV="$CACHE/host-venv"
[ -x "$HOSTVENV/bin/pip" ] || python3 -m venv "$HOSTVENV"
# the runtime and test dependencies from pyproject.toml, without the linters
REQS=$("$HOSTVENV/bin/python" - "$REPO/pyproject.toml" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
reqs = project["dependencies"] + project["optional-dependencies"]["test"]
print("\n".join(r for r in reqs if r.split(">")[0].split("<")[0].split("=")[0].strip() not in ("mypy", "ruff")))
PY
)
SUM=$(printf '%s %s' "$PYVER" "$REQS" | cksum | cut -d' ' -f1)
DEPS="$CACHE/deps-$SUM.cpio"
if [ ! -e "$DEPS" ]; then
    log "pip: the test dependencies for aarch64, Python $PYVER"
    d=$(mktemp -d "$CACHE/deps.XXXXXX")
    chmod 755 "$d"
    platforms=""
    for y in 17 26 27 28 31 34 35 36; do platforms="$platforms --platform manylinux_2_${y}_aarch64"; done
    echo "$REQS" > "$d/requirements.txt"
    # shellcheck disable=SC2086
    "$HOSTVENV/bin/pip" install --quiet --disable-pip-version-check --target "$d/opt/deps" \
        --only-binary=:all: --implementation cp --python-version "$PYVER" $platforms \
        -r "$d/requirements.txt"
    cpio_of "$d" > "$DEPS.tmp"
    mv "$DEPS.tmp" "$DEPS"
    rm -rf "$d"
fi

# ---- this checkout: the sources, and the package installed with its entry points
work=$(mktemp -d "$CACHE/run.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/top/src" "$work/build"
(cd "$REPO" && git ls-files -co --exclude-standard -z | cpio -0 -pdm --quiet "$work/top/src")
(cd "$REPO" && git ls-files -co --exclude-standard -z | cpio -0 -pdm --quiet "$work/build")
"$HOSTVENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --target "$work/top/opt/project" "$work/build"
cp "$REPO/.ci/arm64/init.sh" "$work/top/init"
# the arguments as shell words: init.sh evals them, so ARM64_TRIO="-k 'a or b'" works
shquote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
    echo "ARM64_TESTS=$(shquote "$ARM64_TESTS")"
    echo "ARM64_TRIO=$(shquote "$ARM64_TRIO")"
} > "$work/top/guest.env"
cpio_of "$work/top" > "$work/top.cpio"
cat "$CACHE/rootfs.cpio" "$DEPS" "$work/top.cpio" > "$work/initrd.cpio"   # initramfs archives concatenate

log "booting $KVER under qemu-system-aarch64 (TCG), console in $LOG"
start=$(date +%s)
set +e
timeout "$TIMEOUT" nice -n 10 qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on -smp "$SMP" -m "$MEM" \
    -accel tcg,thread=multi -nographic -no-reboot -device virtio-rng-pci \
    -kernel "$VMLINUZ" -initrd "$work/initrd.cpio" \
    -append "console=ttyAMA0 rdinit=/init panic=-1 quiet" < /dev/null 2>&1 | tee "$LOG"
set -e
rc=$(sed -n 's/.*TRIO_URING_ARM64_DONE rc=\([0-9]*\).*/\1/p' "$LOG" | tail -1)
[ -n "$rc" ] || rc=99
log "arm64 run finished with rc=$rc after $(($(date +%s) - start)) s (console: $LOG)"
exit "$rc"
