"""The progress display: a redrawn bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from treadle.bench._progress import Progress, bar


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar():
    assert bar(0, 10, 10) == "[..........]"
    assert bar(5, 10, 10) == "[#####.....]"
    assert bar(10, 10, 10) == "[##########]"
    assert bar(3, 0, 4) == "[....]"


def test_not_a_tty_prints_one_line_per_finished_run():
    out = io.StringIO()
    p = Progress(2, out, now=100.0)
    assert not p.tty
    p.start("switch on asyncio", now=100.0)          # nothing: no redraw in logs
    assert out.getvalue() == ""
    p.finish("switch on asyncio", "1.00M switches/s", now=110.0)
    p.finish("switch on treadle", "failed: boom", now=120.0)
    lines = out.getvalue().splitlines()
    assert lines == [
        "[1/2] switch on asyncio: 1.00M switches/s (0:10 elapsed, ~0:10 left)",
        "[2/2] switch on treadle: failed: boom (0:20 elapsed, ~0:00 left)",
    ]
    assert "\r" not in out.getvalue()


def test_tty_redraws_one_line_and_clears_it(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = FakeTTY()
    p = Progress(4, out, now=0.0)
    assert p.tty
    p.start("a long label for the first run", now=0.0)
    p.finish("a long label for the first run", "ok", now=30.0)
    p.start("short", now=30.0)
    text = out.getvalue()
    assert "\n" not in text
    first, second = text.split("\r")[1:]
    assert first.startswith("[........................] 0/4  a long label")
    assert second.startswith("[######..................] 1/4  short  (0:30 elapsed, ~1:30 left)")
    assert len(second) == len(first)          # padded over the longer line
    p.message("note: something")
    assert out.getvalue().endswith("\rnote: something\n")
    p.close()


def test_tty_line_never_wraps(monkeypatch):
    monkeypatch.setenv("COLUMNS", "41")
    out = FakeTTY()
    p = Progress(3, out, now=0.0)
    p.start("echo_protocol_64k on treadle-pure " * 3, now=0.0)
    assert len(out.getvalue()) == 1 + 40


def test_disabled_prints_nothing():
    out = FakeTTY()
    p = Progress(1, out, enabled=False)
    p.start("x")
    p.finish("x", "ok")
    p.message("m")
    p.close()
    assert out.getvalue() == ""
