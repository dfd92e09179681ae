"""vxn: run OCI container images as Xen DomU guests."""

__version__ = "0.1.0"

# The vxn CLI and vxnd refuse to talk across different API versions.
API_VERSION = 1
