#!/bin/sh
# make test-arm64: trio_uring on Debian's arm64 kernel under qemu-system-aarch64
# (full-system TCG emulation: qemu's user-mode emulation has no io_uring).
#
# Everything it downloads comes from Debian's and PyPI's registries, and is
# cached outside the repository, in $ARM64_CACHE (~/.cache/trio_uring/arm64):
#   apt/          a private apt configuration for arm64 (the host's is untouched)
#   kernel/       linux-image-*-arm64 (the linux-image-arm64 metapackage's choice), unpacked
#   rootfs.foreign/  debootstrap --foreign --arch=arm64 (host side, no binfmt needed)
#   rootfs.cpio   the finished userland (second stage run inside the VM) with a venv
#                 holding the test dependencies from PyPI; delete it to rebuild
# Each run then boots that userland plus this checkout as the initramfs and runs
# .ci/arm64/init.sh (python -m trio_uring, our suite, trio's suite).
#
# Knobs (environment): ARM64_TESTS (pytest arguments for our suite, empty: skip),
# ARM64_TRIO (tests/conformance/run.py arguments, "skip": skip), ARM64_SMP,
# ARM64_MEM, ARM64_TIMEOUT (seconds for the whole VM run).
set -eu
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${ARM64_CACHE:-$HOME/.cache/trio_uring/arm64}
SUITE=${ARM64_SUITE:-bookworm}
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
SMP=${ARM64_SMP:-2}
MEM=${ARM64_MEM:-4G}
TIMEOUT=${ARM64_TIMEOUT:-10800}
ARM64_TESTS=${ARM64_TESTS-"-q -p no:cacheprovider tests"}
ARM64_TRIO=${ARM64_TRIO-""}
mkdir -p "$CACHE"
log() { echo "== [$(date -u +%H:%M:%S)] $*"; }

for tool in qemu-system-aarch64:qemu-system-arm debootstrap:debootstrap cpio:cpio depmod:kmod; do
    if ! command -v "${tool%%:*}" >/dev/null; then
        echo "missing ${tool%%:*}: apt-get install qemu-system-arm debootstrap cpio kmod" >&2
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

# ---- stage 1: the userland, unpacked on the host
# libatomic1: atomic_thread_fence, trio_uring's memory barrier on aarch64
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
# that is slow under TCG): virtio PCI, network, disk, entropy
MODULES="virtio_pci virtio_net virtio_blk virtio-rng"
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

# the project as the guest sees it: tracked and new files of this checkout
src_tree() {
    dest=$1
    mkdir -p "$dest/src"
    (cd "$REPO" && git ls-files -co --exclude-standard -z | cpio -0 -pdm --quiet "$dest/src")
}

boot() {  # boot INITRD STAGE [extra qemu args...]
    initrd=$1 stage=$2
    shift 2
    log "booting $KVER ($stage), console in $CACHE/$stage.log"
    set +e
    timeout "$TIMEOUT" nice -n 10 qemu-system-aarch64 -M virt -cpu max,pauth-impdef=on -smp "$SMP" -m "$MEM" \
        -accel tcg,thread=multi -nographic -no-reboot \
        -kernel "$VMLINUZ" -initrd "$initrd" \
        -append "console=ttyAMA0 rdinit=/init panic=-1 quiet trio_uring_stage=$stage" \
        -netdev user,id=n0 -device virtio-net-pci,netdev=n0 -device virtio-rng-pci \
        "$@" < /dev/null 2>&1 | tee "$CACHE/$stage.log"
    set -e
    rc=$(sed -n 's/.*TRIO_URING_ARM64_DONE rc=\([0-9]*\).*/\1/p' "$CACHE/$stage.log" | tail -1)
    [ -n "$rc" ] || rc=99
    return "$rc"
}

# ---- stage 2, inside the VM (no binfmt on the host needed); cached as rootfs.cpio
if [ ! -e "$CACHE/rootfs.cpio" ]; then
    work=$(mktemp -d "$CACHE/stage2.XXXXXX")
    log "stage 2: preparing the initramfs"
    mkdir "$work/root"
    cp -a "$CACHE/rootfs.foreign/." "$work/root/"
    # debootstrap --foreign leaves /proc a symlink to the host's
    for d in proc sys; do
        if [ -L "$work/root/$d" ]; then rm "$work/root/$d"; fi
        mkdir -p "$work/root/$d"
    done
    consoles "$work/root"
    modules "$work/root"
    cp "$REPO/.ci/arm64/init.sh" "$work/root/init"
    cp /etc/ssl/certs/ca-certificates.crt "$work/root/etc/ssl/certs/trio-uring-host.crt" 2>/dev/null || true
    src_tree "$work/root"
    (cd "$work/root" && find . | cpio -o -H newc --quiet) > "$work/stage2.cpio"
    truncate -s 4G "$work/out.img"
    boot "$work/stage2.cpio" bootstrap -drive "file=$work/out.img,format=raw,if=none,id=d0" \
        -device virtio-blk-pci,drive=d0
    log "stage 2 done: unpacking the finished userland"
    mkdir "$work/final"
    tar -C "$work/final" --numeric-owner -xf "$work/out.img"
    rm -f "$work/final/init"
    consoles "$work/final"
    (cd "$work/final" && find . | cpio -o -H newc --quiet) > "$CACHE/rootfs.cpio.tmp"
    mv "$CACHE/rootfs.cpio.tmp" "$CACHE/rootfs.cpio"
    rm -rf "$work"
fi

# ---- the run: the cached userland + this checkout (initramfs archives concatenate)
work=$(mktemp -d "$CACHE/run.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/top"
src_tree "$work/top"
cp "$REPO/.ci/arm64/init.sh" "$work/top/init"
{
    printf 'ARM64_TESTS=%s\n' "'$ARM64_TESTS'"
    printf 'ARM64_TRIO=%s\n' "'$ARM64_TRIO'"
} > "$work/top/src/.ci/arm64/guest.env"
(cd "$work/top" && find . | cpio -o -H newc --quiet) > "$work/top.cpio"
cat "$CACHE/rootfs.cpio" "$work/top.cpio" > "$work/initrd.cpio"
start=$(date +%s)
rc=0
boot "$work/initrd.cpio" run || rc=$?
log "arm64 run finished with rc=$rc after $(($(date +%s) - start)) s (log: $CACHE/run.log)"
exit "$rc"
