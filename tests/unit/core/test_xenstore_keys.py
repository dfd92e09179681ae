"""What vxn reads from XenStore that a guest may have written: validated, or ignored."""

from __future__ import annotations

import pytest

from vxn.core import xenstore_keys as keys
from vxn.errors import InvalidArgument


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"42", 42),
        (b"0", 0),
        (b"255", 255),
        (b"256", None),
        (b"-1", None),
        (b" 4", None),
        (b"4\n", None),
        (b"", None),
        (None, None),
        (b"0042", None),
        (b"1e3", None),
    ],
)
def test_exit_code_is_0_to_255_or_nothing(raw: bytes | None, code: int | None) -> None:
    assert keys.exit_code(raw) == code


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/dev/pts/3", "/dev/pts/3"),
        (b"/dev/sda", None),
        (b"/dev/pts/../sda", None),
        (b"/etc/shadow", None),
        (None, None),
    ],
)
def test_console_tty_is_a_pts_or_nothing(raw: bytes | None, path: str | None) -> None:
    assert keys.console_tty(raw) == path


def test_labels_round_trip_any_printable_text() -> None:
    for value in ("app:latest", "reg.io/a/b@sha256:ab", "100% café", ""):
        encoded = keys.encode_label(value)
        assert encoded.isascii()
        assert keys.decode_label(encoded) == value


def test_labels_live_under_the_vm_path_only() -> None:
    vm = keys.vm_path("6f1b2c3d-0a1b-4c2d-8e3f-112233445566")
    assert keys.labels_dir(vm) == f"{vm}/vxn"
    for forged in ("/local/domain/5/data", "/vm/../local", "/vm/x"):
        with pytest.raises(InvalidArgument):
            keys.labels_dir(forged)
