"""Tests that run inside the Xen Dom0 (collected only there; see ../README.md)."""
