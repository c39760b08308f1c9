#!/bin/busybox sh
# PID 1 of an x86_64 test guest (tools/test_kernels.py --root initramfs; the
# archive is built by tools/guest_initramfs.py).  The initramfs is the root
# file system: this machine's venv and Python at their host paths, a static
# busybox, this checkout.  Mounts the run's output folder (9p, tag "out") at
# its host path, runs GUEST_CMD (tools/kernel_guest.py) there, powers off.
/bin/busybox mkdir -p /usr/local/bin
/bin/busybox --install -s /usr/local/bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 PYTHONUNBUFFERED=1 TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# /tmp stays the root's own folder (the root is a tmpfs already): a
# checkout under /tmp, as CI's fresh clone is, lives there
# shellcheck disable=SC1091
. /guest.env
hostname kernel-vm
ip link set lo up
for ko in $GUEST_MODULES; do
    insmod "$ko" || echo "[guest] insmod $ko failed"
done
# ctypes.util.find_library reads the cache ldconfig writes
ldconfig
mkdir -p "$GUEST_OUT"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out "$GUEST_OUT" || echo "[guest] cannot mount $GUEST_OUT"
# systemd's default limits for a service or login (DefaultLimitNOFILE=
# 1024:524288): the soft limit stays 1,024, as a test finds it on a server,
# and a test that needs more fds raises it itself
ulimit -Hn 524288
ulimit -Sn 1024
cd "$GUEST_REPO" || exit 1
eval "$GUEST_CMD"
echo "[guest] exit $?"
sync
umount "$GUEST_OUT" 2>/dev/null
echo o > /proc/sysrq-trigger
sleep 30
