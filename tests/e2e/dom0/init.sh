#!/bin/sh
# PID 1 of the test Dom0 (baked into the image as /sbin/vxn-dom0-init).
# Faster and more deterministic than systemd; Xen itself is started by
# Debian's own /etc/init.d/xen with the stock /etc/default/xen.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts
mount -o remount,rw /
mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
mkdir -p /run/lock /var/log/xen /var/lib/xen /run/xen
# What udev would make: Xen's block hotplug script (locking.sh) needs /dev/stdin,
# and spins until libxl kills it without.
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
for n in 0:stdin 1:stdout 2:stderr; do
    [ -e "/dev/${n#*:}" ] || ln -s "/proc/self/fd/${n%%:*}" "/dev/${n#*:}"
done
hostname dom0
echo "VXN-DOM0: userspace up at $(cut -d' ' -f1 /proc/uptime)s"
for m in xen-blkback xen-netback loop 9pnet_virtio 9p; do modprobe $m; done
/etc/init.d/xen start
echo "VXN-DOM0: xen init rc=$? at $(cut -d' ' -f1 /proc/uptime)s"

# From the host, each optional: the checkout (a 9p share for --keep, else a
# per-run disk), the per-run directory (9p: jobs in, results out) and the
# Python deps (a disk). Disks, because importing over 9p under TCG is slow.
for share in vxnsrc:/srv/src vxnrun:/srv/run; do
    tag=${share%%:*}; dir=${share#*:}
    mkdir -p "$dir"
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 "$tag" "$dir" 2>/dev/null \
        && echo "VXN-DOM0: share $tag at $dir"
done
for disk in vxnsrc:/srv/src vxndeps:/srv/deps; do
    label=${disk%%:*}; dir=${disk#*:}
    mkdir -p "$dir"
    mountpoint -q "$dir" || { mount -t ext4 -o ro,noload "LABEL=$label" "$dir" 2>/dev/null \
        && echo "VXN-DOM0: disk $label at $dir"; }
done
echo "VXN-DOM0-READY at $(cut -d' ' -f1 /proc/uptime)s"

console_shell() {
    while true; do setsid sh -c 'exec sh -i </dev/hvc0 >/dev/hvc0 2>&1'; done
}
# vxn.hook=<script.py> on the kernel command line: run it with python3, then
# power off; vxn.shell: a root shell on the console meanwhile (for --keep).
hook=$(sed -n 's/.*vxn\.hook=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -z "$hook" ] && console_shell
grep -qw vxn.shell /proc/cmdline && console_shell &
python3 "$hook"; echo "VXN-DOM0-HOOK-RC=$?"; sync
busybox poweroff -f    # Linux -> ACPI S5 via Xen -> QEMU exits
