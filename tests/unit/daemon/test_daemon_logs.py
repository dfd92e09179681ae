import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vxn.daemon import logs


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """Undo logs.setup(): restore the root logger's handlers and level, close ours."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("vxnd", level, __file__, 1, message, None, None)


@pytest.mark.parametrize(
    ("level", "prio"),
    [(logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3), (50, 2)],
)
def test_syslog_priorities(level: int, prio: int) -> None:
    assert logs.priority(level) == prio


def test_journal_lines_each_carry_the_priority() -> None:
    text = logs.JournalFormatter().format(_record(logging.WARNING, "one\ntwo"))
    assert text == "<4>vxnd: one\n<4>two"


def test_journal_stream_must_name_our_stderr() -> None:
    r, w = os.pipe()
    try:
        st = os.fstat(w)
        assert logs.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, w)
        assert not logs.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:1"}, w)
        assert not logs.stderr_is_journal({"JOURNAL_STREAM": "garbage"}, w)
        assert not logs.stderr_is_journal({}, w)
    finally:
        os.close(r)
        os.close(w)


def test_a_log_file_gets_plain_timestamped_lines(
    tmp_path: Path, root_logger: logging.Logger
) -> None:
    handler = logs.setup(log_file=tmp_path / "vxnd.log", env={})
    logging.getLogger("vxnd").info("ready on %s", "/run/vxn/vxn.sock")
    logging.getLogger("vxnd").debug("not at INFO")
    handler.flush()
    line = (tmp_path / "vxnd.log").read_text()
    assert line.endswith(" INFO vxnd: ready on /run/vxn/vxn.sock\n")
    assert line[:4].isdigit()
    assert line.count("\n") == 1


def test_debug_lowers_the_level(root_logger: logging.Logger) -> None:
    logs.setup(debug=True, env={})
    assert root_logger.level == logging.DEBUG
    assert isinstance(root_logger.handlers[-1].formatter, logging.Formatter)
    assert not isinstance(root_logger.handlers[-1].formatter, logs.JournalFormatter)
