#!/bin/busybox sh
# /init of the Dom0's own small initramfs: load the root disk's modules, mount
# it, hand over to /sbin/vxn-dom0-init. Replaces Debian's 37 MB udev-based
# initrd, which costs about 20 s more per boot under TCG.
/bin/busybox mkdir -p /proc /sys /dev /root
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev
for m in $(/bin/busybox cat /modules.order); do
    /bin/busybox insmod "/$m" || echo "VXN-DOM0-INITRD: insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do /bin/busybox sleep 0.1; i=$((i + 1)); done
if ! /bin/busybox mount -t ext4 -o rw /dev/vda /root; then
    echo "VXN-DOM0-INITRD: cannot mount /dev/vda"; exec /bin/busybox sh
fi
/bin/busybox umount /proc
/bin/busybox mount --move /dev /root/dev
exec /bin/busybox switch_root /root /sbin/vxn-dom0-init
