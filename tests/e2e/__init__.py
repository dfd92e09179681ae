"""The real-Xen test tier: Xen 4.17 and a Debian Dom0 booted under QEMU (see README.md)."""
