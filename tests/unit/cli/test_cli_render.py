from datetime import UTC, datetime, timedelta, timezone

import pytest

from vxn.cli import render

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (5_200_000, "5.2MB"),
        (7_797_000, "7.8MB"),
        (141_900_000, "142MB"),
        (1_050_000_000, "1.05GB"),
        (999_960, "1e+03kB"),  # Go's %.3g quirk, kept so we print what docker prints
    ],
)
def test_human_size_is_dockers(size: int, text: str) -> None:
    assert render.human_size(size) == text


def test_human_size_precision_4_for_virtual_size() -> None:
    assert render.human_size(7_797_000, 4) == "7.797MB"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (59 * 60, "59 minutes"),
        (60 * 60, "About an hour"),
        (89 * 60, "About an hour"),
        (90 * 60, "2 hours"),
        (47 * 3600, "47 hours"),
        (48 * 3600, "2 days"),
        (13 * 86400, "13 days"),
        (14 * 86400, "2 weeks"),
        (59 * 86400, "8 weeks"),
        (60 * 86400, "2 months"),
        (729 * 86400, "24 months"),
        (730 * 86400, "2 years"),
    ],
)
def test_human_duration_is_go_units(seconds: float, text: str) -> None:
    assert render.human_duration(seconds) == text


def test_since_and_missing_times() -> None:
    assert render.since(NOW - timedelta(days=15), NOW) == "2 weeks ago"
    assert render.since(None, NOW) == "N/A"
    assert render.since(NOW + timedelta(hours=1), NOW) == "Less than a second ago"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-17T12:00:00Z", datetime(2024, 5, 17, 12, tzinfo=UTC)),
        ("2024-05-17T12:00:00.123456789Z", datetime(2024, 5, 17, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2024-05-17T14:00:00+02:00", datetime(2024, 5, 17, 12, tzinfo=UTC)),
        ("2024-05-17T12:00:00", datetime(2024, 5, 17, 12, tzinfo=UTC)),
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_time(text: str | None, expected: datetime | None) -> None:
    assert render.parse_time(text) == expected


def test_docker_time() -> None:
    assert render.docker_time(datetime(2024, 1, 26, 23, 44, 1, tzinfo=UTC)) == (
        "2024-01-26 23:44:01 +0000 UTC"
    )
    assert render.docker_time(None) == "N/A"


def test_short_id() -> None:
    assert render.short_id("sha256:3cc203321400" + "0" * 52) == "3cc203321400"
    assert render.short_id("3cc2033214001234") == "3cc203321400"


def test_table_pads_columns_by_three_and_trims_the_last() -> None:
    lines = render.table(
        ("REPOSITORY", "TAG", "SIZE"), [["alpine", "3.19", "7.8MB"], ["busybox", "latest", "4MB"]]
    )
    assert lines == [
        "REPOSITORY   TAG      SIZE",
        "alpine       3.19     7.8MB",
        "busybox      latest   4MB",
    ]


def test_table_without_rows_is_the_header() -> None:
    assert render.table(("A", "BB"), []) == ["A   BB"]


def test_go_json_is_compact_sorted_and_escaped() -> None:
    assert render.go_json({"b": "<none>", "a": "x&y"}) == (
        '{"a":"x\\u0026y","b":"\\u003cnone\\u003e"}'
    )


def _ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(
    ("summary", "status"),
    [
        ({"state": "created"}, "Created"),
        ({"state": "running", "started_at": _ago(200)}, "Up 3 minutes"),
        ({"state": "running", "started_at": _ago(0.2)}, "Up Less than a second"),
        ({"state": "paused", "started_at": _ago(7200)}, "Up 2 hours (Paused)"),
        (
            {"state": "exited", "exit_code": 42, "started_at": _ago(9), "finished_at": _ago(5)},
            "Exited (42) 5 seconds ago",
        ),
        ({"state": "exited", "exit_code": 125}, "Exited (125)"),
        (
            {"state": "restarting", "exit_code": 1, "finished_at": _ago(60)},
            "Restarting (1) About a minute ago",
        ),
        ({"state": "removing"}, "Removal In Progress"),
        ({"state": "dead"}, "Dead"),
    ],
)
def test_container_status_is_dockers(summary: dict[str, object], status: str) -> None:
    assert render.container_status(summary, NOW) == status


@pytest.mark.parametrize(
    ("command", "trunc", "shown"),
    [
        ("sh", True, '"sh"'),
        ("sleep 1000", True, '"sleep 1000"'),
        ("12345678901234567890", True, '"12345678901234567890"'),
        ("sh -c 'echo hi; sleep 100'", True, '"sh -c \'echo hi; sle…"'),
        ("sh -c 'echo hi; sleep 100'", False, "\"sh -c 'echo hi; sleep 100'\""),
        ('echo "a\\b"\n\t\x1b\x7f ü', False, '"echo \\"a\\\\b\\"\\n\\t\\x1b\\x7f ü"'),
    ],
)
def test_commands_are_go_quoted_and_cut_at_20(command: str, trunc: bool, shown: str) -> None:
    assert render.quote_command(command, trunc) == shown


def test_nano_time_is_utc_fixed_width() -> None:
    when = datetime(2024, 6, 1, 14, 0, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert render.nano_time(when) == "2024-06-01T12:00:05.123456000Z"


def test_timestamps_start_every_line_even_across_chunks() -> None:
    stamper = render.LineStamper()
    t1, t2 = "2024-06-01T12:00:00+00:00", "2024-06-01T12:00:01.5+00:00"
    s1, s2 = "2024-06-01T12:00:00.000000000Z ", "2024-06-01T12:00:01.500000000Z "
    assert stamper.stamp("out", b"a\nb", t1) == f"{s1}a\n{s1}b".encode()
    assert stamper.stamp("err", b"e\n", t2) == f"{s2}e\n".encode()  # streams apart
    assert stamper.stamp("out", b"c\n\nd\n", t2) == f"c\n{s2}\n{s2}d\n".encode()


def test_event_lines_are_dockers_text() -> None:
    die = {"type": "container", "action": "die", "id": "ab" * 32, "name": "web"}
    die |= {"image": "alpine", "time": NOW.timestamp() + 0.25, "exit_code": 42}
    assert render.event_line(die) == (
        f"2024-06-01T12:00:00.250000000Z container die {'ab' * 32} "
        "(exitCode=42, image=alpine, name=web)"
    )
    start = {k: v for k, v in die.items() if k != "exit_code"} | {"action": "start"}
    assert render.event_line(start).endswith(" (image=alpine, name=web)")
