#!/bin/sh
# PID 1 of the arm64 test VM (.ci/arm64/run.sh).  The initramfs *is* the root
# file system (a tmpfs), so no block or network driver is needed to boot; the
# modules for the disk that carries results out and for the network are loaded
# here.  The kernel command line says what to do:
#   trio_uring_stage=bootstrap  finish debootstrap's second stage, install the
#                               test dependencies from PyPI, and write the whole
#                               root file system as a tar stream to /dev/vda
#   trio_uring_stage=run        install /src, run the report and the suites
# Either way the last console line is "TRIO_URING_ARM64_DONE rc=N".
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 PYTHONUNBUFFERED=1 TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
hostname arm64-vm 2>/dev/null

stage=$(sed -n 's/.*trio_uring_stage=\([a-z]*\).*/\1/p' /proc/cmdline)

finish() {
    echo "TRIO_URING_ARM64_DONE rc=$1"
    sync
    echo o > /proc/sysrq-trigger
    sleep 30
}

step() {
    echo "== [$(date -u +%H:%M:%S)] $*"
}

network() {
    modprobe virtio_pci && modprobe virtio_net && modprobe virtio-rng 2>/dev/null
    ip link set lo up
    ip link set eth0 up
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
    echo "nameserver 10.0.2.3" > /etc/resolv.conf
}

# the host's CA bundle (an egress proxy may re-sign TLS), for pip
if [ -f /etc/ssl/certs/trio-uring-host.crt ]; then
    export PIP_CERT=/etc/ssl/certs/trio-uring-host.crt
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_PROGRESS_BAR=off

case "$stage" in
bootstrap)
    step "debootstrap --second-stage"
    /debootstrap/debootstrap --second-stage || finish 1
    mount -t proc proc /proc 2>/dev/null  # the second stage unmounts it
    network || finish 2
    step "python3 -m venv /opt/venv; pip install the test dependencies from PyPI"
    python3 -m venv /opt/venv || finish 3
    /opt/venv/bin/pip install --upgrade pip 'setuptools>=64' wheel || finish 4
    (cd /src && /opt/venv/bin/pip install '.[test]') || finish 5
    /opt/venv/bin/pip uninstall -y trio_uring || finish 6
    rm -rf /src
    step "writing the root file system to /dev/vda"
    modprobe virtio_blk || finish 7
    for _ in 1 2 3 4 5; do [ -b /dev/vda ] && break; sleep 1; done
    tar -C / --one-file-system --numeric-owner -cf /dev/vda . || finish 8
    finish 0
    ;;
run)
    . /src/.ci/arm64/guest.env
    network || finish 2
    cd /src || finish 3
    step "pip install -e '.[test]'"
    /opt/venv/bin/pip install --no-build-isolation -q -e '.[test]' || finish 4
    export PATH=/opt/venv/bin:$PATH
    rc=0
    uname -a
    python -c 'import os, platform, sys; print(platform.machine(), sys.byteorder, "page size", os.sysconf("SC_PAGE_SIZE"), "python", platform.python_version())'
    step "python -m trio_uring"
    python -m trio_uring || rc=1
    # a login's limits, as on a server (kernel-vm.md: the console's are lower)
    ulimit -n 65536
    if [ -n "$ARM64_TESTS" ]; then
        step "our suite: python -m pytest $ARM64_TESTS"
        t0=$(date +%s)
        # shellcheck disable=SC2086
        python -m pytest $ARM64_TESTS || rc=1
        echo "our suite took $(($(date +%s) - t0)) s"
    fi
    if [ -n "$ARM64_TRIO" ]; then
        step "trio's suite: python tests/conformance/run.py $ARM64_TRIO"
        t0=$(date +%s)
        # shellcheck disable=SC2086
        python tests/conformance/run.py $ARM64_TRIO || rc=1
        echo "trio's suite took $(($(date +%s) - t0)) s"
    fi
    finish $rc
    ;;
*)
    echo "trio_uring_stage= missing from the kernel command line"
    finish 9
    ;;
esac
