"""Service output through the supervisor: long lines, bad bytes, a last line without newline, order."""

from __future__ import annotations

from pathlib import Path

import anyio
from support_supervisor import make_config, poll, running, service

from a3s_dev.core.logs import FileSink
from a3s_dev.core.state import ServiceState

S = ServiceState


def test_a_megabyte_line_invalid_utf8_and_a_final_line_without_newline_come_through(
    tmp_path: Path,
) -> None:
    script = tmp_path / "noisy.py"
    script.write_text(
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "out.write(b'x' * 1_000_000 + b'\\n')\n"
        "out.write(b'bad \\xff\\xfe bytes\\n')\n"
        "out.write(b'\\x1b[31mred\\x1b[0m\\n')\n"
        "sys.stderr.write('on stderr\\n'); sys.stderr.flush()\n"
        "out.write(b'no newline at the end')\n"
        "out.flush()\n"
    )
    config = make_config(
        tmp_path, service("noisy", "exec python3 noisy.py", tmp_path, oneshot=True)
    )
    files = FileSink(tmp_path / "logs")

    async def body() -> list[str]:
        async with running(config, sinks=[files]) as (sup, memory, _):
            await sup.start()
            await poll(lambda: sup.status("noisy").state is S.COMPLETED, message="noisy done")
            await poll(lambda: len(memory.lines) >= 5, message="five lines")
            assert sup.tail("noisy", 2) == ["on stderr", "no newline at the end"]
            return [line for name, line in memory.lines if name == "noisy"]

    lines = anyio.run(body)
    files.close()
    assert lines == [
        "x" * 1_000_000,
        "bad \ufffd\ufffd bytes",
        "\x1b[31mred\x1b[0m",
        "on stderr",
        "no newline at the end",
    ]
    on_disk = (tmp_path / "logs" / "noisy.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in on_disk] == lines


def test_many_lines_arrive_whole_and_in_order(tmp_path: Path) -> None:
    config = make_config(tmp_path, service("count", "seq 1 200000", tmp_path, oneshot=True))

    async def body() -> list[str]:
        async with running(config) as (sup, memory, _):
            await sup.start()
            await poll(lambda: sup.status("count").state is S.COMPLETED, message="count done")
            return [line for name, line in memory.lines if name == "count"]

    assert anyio.run(body) == [str(i) for i in range(1, 200001)]
