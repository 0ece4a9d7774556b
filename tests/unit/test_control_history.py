"""Reading `.a3s/logs/`: stamps, merging in time order, -n per service, --since, rotation."""

from __future__ import annotations

import time
from pathlib import Path

from a3s_dev.core.history import Entry, parse_lines, parse_stamp, read_history, service_files


def stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def write_log(
    folder: Path, name: str, lines: list[tuple[float, str]], suffix: str = ".log"
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}{suffix}", "a") as f:
        f.writelines(f"{stamp(at)} {text}\n" for at, text in lines)


T0 = 1_795_430_000.0


def test_stamp_round_trips_to_the_millisecond() -> None:
    at = T0 + 12.345
    assert parse_stamp(stamp(at)) == at
    assert parse_stamp("not a stamp at all....") is None


def test_lines_keep_their_text_and_an_unstamped_line_takes_the_previous_moment() -> None:
    lines = [f"{stamp(T0)} first | with pipe\n", "continued without stamp\n", f"{stamp(T0 + 1)} "]
    assert list(parse_lines("api", lines)) == [
        Entry(T0, "api", "first | with pipe"),
        Entry(T0, "api", "continued without stamp"),
        Entry(T0 + 1, "api", ""),
    ]


def test_history_merges_services_in_time_order(tmp_path: Path) -> None:
    write_log(tmp_path, "db", [(T0, "d0"), (T0 + 2, "d2"), (T0 + 4, "d4")])
    write_log(tmp_path, "api", [(T0 + 1, "a1"), (T0 + 3, "a3")])
    write_log(tmp_path, "a3s", [(T0 + 2.5, "api is healthy")])
    texts = [e.text for e in read_history(tmp_path)]
    assert texts == ["d0", "a1", "d2", "api is healthy", "a3", "d4"]


def test_history_of_named_services_only_with_last_n_each(tmp_path: Path) -> None:
    write_log(tmp_path, "db", [(T0 + i, f"d{i}") for i in range(5)])
    write_log(tmp_path, "api", [(T0 + i + 0.5, f"a{i}") for i in range(5)])
    write_log(tmp_path, "web", [(T0, "w")])
    texts = [e.text for e in read_history(tmp_path, ["db", "api"], last=2)]
    assert texts == ["d3", "a3", "d4", "a4"]
    assert read_history(tmp_path, ["db"], last=0) == []


def test_history_since_and_until(tmp_path: Path) -> None:
    write_log(tmp_path, "db", [(T0 + i, f"d{i}") for i in range(10)])
    assert [e.text for e in read_history(tmp_path, since=T0 + 7)] == ["d7", "d8", "d9"]
    assert [e.text for e in read_history(tmp_path, until=T0 + 1)] == ["d0", "d1"]


def test_rotated_file_comes_before_the_current_one(tmp_path: Path) -> None:
    write_log(tmp_path, "db", [(T0, "old")], suffix=".log.1")
    write_log(tmp_path, "db", [(T0 + 1, "new")])
    assert service_files(tmp_path) == {"db": [tmp_path / "db.log.1", tmp_path / "db.log"]}
    assert [e.text for e in read_history(tmp_path, last=1)] == ["new"]
    assert [e.text for e in read_history(tmp_path)] == ["old", "new"]


def test_no_logs_folder_is_an_empty_history(tmp_path: Path) -> None:
    assert read_history(tmp_path / "missing") == []


def test_logs_command_pads_and_colors_like_the_foreground(tmp_path: Path) -> None:
    import io

    from a3s_dev.cli import commands as remote

    a3sfile = tmp_path / "A3sfile.hcl"
    a3sfile.write_text(
        'service "frontend" {\n  cmd = "true"\n}\nservice "db" {\n  cmd = "true"\n}\n'
    )
    logs = tmp_path / ".a3s" / "logs"
    write_log(logs, "db", [(T0 + 1, "db line")])
    write_log(logs, "frontend", [(T0, "fe line")])
    out = io.BytesIO()
    assert (
        remote.logs(a3sfile, ["db"], follow=False, last=None, since=None, out=out, color=True) == 0
    )
    line = out.getvalue().decode()
    hms = time.strftime("%H:%M:%S", time.localtime(T0 + 1))
    # Padded to the longest declared name; db is the second declared service: the second color.
    assert line == f"\x1b[33m{hms} db       |\x1b[0m db line\n"
    plain = io.BytesIO()
    remote.logs(a3sfile, [], follow=False, last=None, since=None, out=plain, color=False)
    assert plain.getvalue().decode().splitlines() == [
        f"{time.strftime('%H:%M:%S', time.localtime(T0))} frontend | fe line",
        f"{hms} db       | db line",
    ]


def test_a_window_reads_only_the_end_of_the_files_across_a_rotation(tmp_path: Path) -> None:
    """Issue 21: one history request read and parsed 40 MB of rotated files on the proxy's loop."""
    write_log(tmp_path, "api", [(T0 + i, f"old {i:04d} " + "x" * 80) for i in range(1000)], suffix=".log.1")
    write_log(tmp_path, "api", [(T0 + 1000 + i, f"new {i:02d}") for i in range(10)])
    line = len(f"{stamp(T0)} old 0000 " + "x" * 80 + "\n")
    current = (tmp_path / "api.log").stat().st_size
    entries = read_history(tmp_path, ["api"], window=current + 5 * line + 3)
    # the current file whole, then the last 5 whole lines of the rotated one (the cut one goes)
    assert [e.text[:8] for e in entries] == ["old 0995", "old 0996", "old 0997", "old 0998", "old 0999",
                                              *[f"new {i:02d}" for i in range(10)]]
    assert [e.text for e in read_history(tmp_path, ["api"], window=10**9)] == [
        e.text for e in read_history(tmp_path, ["api"])]
