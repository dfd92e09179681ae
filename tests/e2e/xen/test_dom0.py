"""The Dom0 itself: Xen answers, the toolstack matches, the checkout is the host's."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from e2e import checkout
from e2e.cache import REPO
from e2e.xen.guest import xl


def test_xl_list_shows_domain0() -> None:
    rows = [line.split() for line in xl("list").splitlines()[1:]]
    assert ["Domain-0", "0"] in [row[:2] for row in rows], rows


def _xl_info() -> dict[str, str]:
    pairs = (line.partition(":") for line in xl("info").splitlines())
    return {k.strip(): v.strip() for k, sep, v in pairs if sep}


def test_xl_info_reports_free_memory() -> None:
    info = _xl_info()
    assert int(info["free_memory"]) > 256, info  # MiB left for DomUs
    assert info["xen_version"].startswith("4.17."), info


def test_hypervisor_and_tools_are_one_version() -> None:
    """The running hypervisor is the packaged one, from the same build as the tools."""
    versions = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}\\n", "xen-hypervisor-4.17-amd64", "xen-utils-4.17"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(set(versions)) == 1, versions
    assert versions[0].startswith(_xl_info()["xen_version"] + "+"), versions


def test_checkout_is_the_hosts_head(job: dict[str, Any]) -> None:
    assert Path("/srv/src") == REPO  # the share, not a copy baked into the image
    assert checkout.read_head(REPO) == job["host_head"]
    if job["tree_digest"]:  # a per-run snapshot (not the live tree of --keep)
        assert checkout.tree_digest(REPO, job["files"]) == job["tree_digest"]


def test_xen_daemons_run_with_debian_defaults() -> None:
    """No --log=guest etc.: a later test must not pass by reading a log a real Dom0 lacks."""
    # Debian installs it with ucf from this pristine copy.
    packaged = Path("/usr/share/xen-utils-common/default.xen").read_bytes()
    assert Path("/etc/default/xen").read_bytes() == packaged
    daemons = {}
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = proc.read_bytes().split(b"\0")
        except OSError:
            continue
        name = Path(argv[0].decode()).name
        if name in ("xenconsoled", "oxenstored", "xenstored"):
            daemons[name] = [a.decode() for a in argv[1:] if a]
    assert "xenconsoled" in daemons, daemons
    assert {"oxenstored", "xenstored"} & set(daemons), daemons
    assert not [a for args in daemons.values() for a in args if a.startswith("--log")], daemons
