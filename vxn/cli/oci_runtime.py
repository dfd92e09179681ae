"""`vxn-oci-runtime`: the runc-compatible runtime (ARCHITECTURE.md, decision 6). Not yet."""

import sys


def main() -> None:
    print("vxn-oci-runtime: not implemented yet", file=sys.stderr)
    sys.exit(1)
