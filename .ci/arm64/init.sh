#!/bin/sh
# PID 1 of the arm64 test VM (.ci/arm64/run.sh).  The initramfs *is* the root
# file system: Debian's arm64 packages, the test dependencies in /opt/deps,
# this checkout in /src and its installed package in /opt/project.  Runs the
# report and the suites named in /guest.env, then powers off; the last console
# line is "TRIO_URING_ARM64_DONE rc=N".
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 PYTHONUNBUFFERED=1 TERM=dumb
export PYTHONPATH=/opt/project:/opt/deps PYTHONDONTWRITEBYTECODE=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
hostname arm64-vm
# /etc/ld.so.cache, which libc-bin's trigger would have written: without it
# ctypes.util.find_library finds nothing (trio names its threads through it)
ldconfig
ip link set lo up 2>/dev/null || true
modprobe virtio-rng 2>/dev/null || true

finish() {
    echo "TRIO_URING_ARM64_DONE rc=$1"
    sync
    echo o > /proc/sysrq-trigger
    sleep 30
}

step() {
    echo "== [$(date -u +%H:%M:%S)] $*"
}

. /guest.env
cd /src || finish 3
rc=0
uname -a
python3 -c 'import os, platform, sys; print(platform.machine(), sys.byteorder, "page size", os.sysconf("SC_PAGE_SIZE"), "python", platform.python_version())'
step "python -m trio_uring"
python3 -m trio_uring || rc=1
# a login's limits, as on a server (the console's are lower)
ulimit -n 65536
if [ -n "$ARM64_TESTS" ]; then
    step "our suite: python -m pytest $ARM64_TESTS"
    t0=$(date +%s)
    eval "python3 -m pytest $ARM64_TESTS" || rc=1
    echo "our suite took $(($(date +%s) - t0)) s"
fi
if [ -n "$ARM64_TRIO" ]; then
    step "trio's suite: python tests/conformance/run.py $ARM64_TRIO"
    t0=$(date +%s)
    eval "python3 tests/conformance/run.py $ARM64_TRIO" || rc=1
    echo "trio's suite took $(($(date +%s) - t0)) s"
fi
finish $rc
