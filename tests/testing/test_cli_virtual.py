"""``treadle run --virtual-time`` and ``--seed``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from treadle.testing import VirtualClock
from treadle.testing.clock import virtual_time_functions

ROOT = Path(__file__).resolve().parents[2]
BREAKFAST = ROOT / "examples" / "breakfast.py"

# Runs the CLI in a child and reports, on stderr, the real time the program
# took (perf_counter is bound before --virtual-time replaces time.*).
TIMED = textwrap.dedent("""
    import sys
    from time import perf_counter
    from treadle._cli import main
    t0 = perf_counter()
    code = main(sys.argv[1:])
    sys.stderr.write(f"REAL {perf_counter() - t0:.6f}\\n")
    sys.exit(code)
""")


def _treadle(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", TIMED, *args], capture_output=True,
                          text=True, timeout=timeout)


def _real_seconds(out: subprocess.CompletedProcess[str]) -> float:
    line = [l for l in out.stderr.splitlines() if l.startswith("REAL ")][-1]
    return float(line.split()[1])


def test_breakfast_prints_the_same_lines_in_virtual_time():
    out = _treadle("run", "--virtual-time", str(BREAKFAST))
    assert out.returncode == 0, out.stderr
    # What `python examples/breakfast.py` prints after 5 real seconds.
    assert out.stdout.splitlines() == [
        "tea: kettle on",
        "toast: bread in",
        "toast: ready",
        "tea: ready",
        "breakfast: tea and toast in 5 seconds",
    ]
    # In real time this takes 5 s; half of that leaves room for a loaded
    # machine and still fails if the sleeps were waited out.
    assert _real_seconds(out) < 2.5


def test_program_clocks_follow_virtual_time(tmp_path):
    script = tmp_path / "clocks.py"
    script.write_text(textwrap.dedent("""
        import asyncio, time

        async def main():
            loop = asyncio.get_running_loop()
            m, p, w, l = time.monotonic(), time.perf_counter(), time.time(), loop.time()
            mn = time.monotonic_ns()
            await asyncio.sleep(90)
            try:
                await asyncio.wait_for(asyncio.Event().wait(), 10)
            except TimeoutError:
                pass
            print(round(time.monotonic() - m, 3), round(time.perf_counter() - p, 3),
                  round(time.time() - w, 3), loop.time() - l,
                  round((time.monotonic_ns() - mn) / 1e9, 3))

        asyncio.run(main())
        asyncio.run(main())     # one timeline for the whole program
        loop = asyncio.new_event_loop()
        print(loop.time())
        loop.close()
    """))
    out = _treadle("run", "--virtual-time", str(script))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["100.0 100.0 100.0 100.0 100.0"] * 2 + ["200.0"]
    assert _real_seconds(out) < 5


def test_without_virtual_time_the_clock_is_real(tmp_path):
    script = tmp_path / "real.py"
    script.write_text(textwrap.dedent("""
        import asyncio
        async def main():
            return asyncio.get_running_loop().get_clock()
        print(asyncio.run(main()))
    """))
    out = _treadle("run", str(script))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"


def test_virtual_time_script_waiting_only_for_io_waits_in_real_time(tmp_path):
    script = tmp_path / "io.py"
    script.write_text(textwrap.dedent("""
        import asyncio, threading, time

        async def main():
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            def work():
                # real work in a thread; the loop waits for it (no timers)
                import time as t
                t.sleep(0.05)
                loop.call_soon_threadsafe(fut.set_result, "done")
            threading.Thread(target=work).start()
            print(await fut, loop.time())

        asyncio.run(main())
    """))
    out = _treadle("run", "--virtual-time", str(script))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["done", "0.0"]
    assert _real_seconds(out) >= 0.045


SEEDED = textwrap.dedent("""
    import asyncio, sys

    async def main():
        order = []
        async def worker(name):
            for _ in range(3):
                order.append(name)
                await asyncio.sleep(0)
        await asyncio.gather(*(worker(n) for n in "abcd"))
        print("".join(order))
        if len(sys.argv) > 1:
            raise SystemExit(3) if sys.argv[1] == "exit" else ValueError("boom")

    asyncio.run(main())
""")


def test_seed_gives_a_reproducible_schedule(tmp_path):
    script = tmp_path / "seeded.py"
    script.write_text(SEEDED)
    fifo = _treadle("run", str(script))
    assert fifo.stdout.strip() == "abcd" * 3
    runs = {seed: _treadle("run", "--seed", str(seed), str(script)).stdout.strip()
            for seed in range(6)}
    assert len(set(runs.values())) > 1
    assert _treadle("run", "--seed", "4", str(script)).stdout.strip() == runs[4]
    for order in runs.values():
        assert sorted(order) == sorted("abcd" * 3)


def test_failing_seeded_run_names_its_seed(tmp_path):
    script = tmp_path / "seeded.py"
    script.write_text(SEEDED)
    out = _treadle("run", "--seed", "21", str(script), "fail")
    assert out.returncode == 1
    assert "ValueError: boom" in out.stderr
    assert "treadle: this run used --seed 21" in out.stderr
    out = _treadle("run", str(script), "fail")
    assert "--seed" not in out.stderr


def test_bad_seed_is_an_argument_error(tmp_path):
    out = _treadle("run", "--seed", "abc", str(BREAKFAST))
    assert out.returncode == 2
    assert "invalid int value" in out.stderr


def test_virtual_time_functions_restore_the_time_module():
    saved = (time.monotonic, time.perf_counter, time.time, time.monotonic_ns,
             time.perf_counter_ns, time.time_ns)
    clock = VirtualClock()
    with virtual_time_functions(clock):
        m0, t0 = time.monotonic(), time.time_ns()
        assert time.monotonic is not saved[0]
        clock.jump(2.5)
        assert time.monotonic() - m0 == pytest.approx(2.5)
        assert (time.time_ns() - t0) == pytest.approx(2.5e9, abs=1)
    assert (time.monotonic, time.perf_counter, time.time, time.monotonic_ns,
            time.perf_counter_ns, time.time_ns) == saved
