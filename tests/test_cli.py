"""The ``treadle`` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import treadle

TREADLE = [sys.executable, "-m", "treadle"]


def _run(args, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


def _script(tmp_path: Path, body: str, name: str = "script.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_version():
    out = _run([*TREADLE, "--version"])
    assert out.returncode == 0
    assert out.stdout.startswith(f"treadle {treadle.__version__} (")
    assert ("compiled" in out.stdout) == treadle.__compiled__ or "pure Python" in out.stdout


def test_help():
    out = _run([*TREADLE, "--help"])
    assert out.returncode == 0
    assert "run" in out.stdout and "usage: treadle" in out.stdout


def test_run_uses_treadle_for_asyncio_run_and_new_event_loop(tmp_path):
    script = _script(tmp_path, """
        import asyncio, sys
        async def main():
            return type(asyncio.get_running_loop()).__module__, sys.argv[1:]
        print(asyncio.run(main()))
        loop = asyncio.new_event_loop()
        print(type(loop).__module__)
        loop.close()
        print(__name__)
    """)
    out = _run([*TREADLE, "run", str(script), "a", "--flag"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "('treadle._loop', ['a', '--flag'])"
    assert lines[1] == "treadle._loop"
    assert lines[2] == "__main__"


def test_run_makes_asyncios_loop_classes_treadle_loops(tmp_path):
    """A program that builds asyncio's loop class by name (uvicorn's
    ``--loop asyncio``, and ``auto`` without uvloop) gets a treadle loop
    too, and every loop of the program is an instance of that class."""
    script = _script(tmp_path, """
        import asyncio, selectors, socket, sys
        loop = asyncio.SelectorEventLoop()
        print(type(loop).__module__, type(loop).__name__,
              isinstance(loop, asyncio.SelectorEventLoop))
        print(loop.run_until_complete(asyncio.sleep(0, "ran")))
        loop.close()
        sel = selectors.SelectSelector()
        loop = asyncio.SelectorEventLoop(sel)
        a, b = socket.socketpair()
        async def read():
            b.send(b"x")
            return await asyncio.get_running_loop().sock_recv(a, 1)
        print(loop.run_until_complete(read()), sel.get_map() is not None)
        loop.close()
        a.close(); b.close()
        print(sel.get_map() is None)              # the loop closed its selector
        loop = asyncio.new_event_loop()
        print(isinstance(loop, asyncio.SelectorEventLoop))
        loop.close()
        async def main():
            return isinstance(asyncio.get_running_loop(), asyncio.SelectorEventLoop)
        print(asyncio.run(main()))
        if sys.version_info >= (3, 13):
            print(asyncio.EventLoop is asyncio.SelectorEventLoop)
        else:
            print(True)
    """)
    out = _run([*TREADLE, "run", str(script)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "treadle._loop SelectorEventLoop True", "ran", "b'x' True", "True", "True",
        "True", "True"]
    assert out.stderr == ""


def test_run_keeps_treadle_loops_after_a_fresh_default_policy(tmp_path):
    """Test suites reset the policy around each test (uvloop's, with
    ``set_event_loop_policy(DefaultEventLoopPolicy())`` and ``(None)``);
    the loops asyncio builds after that are treadle's still, and so are
    those of a policy's own ``new_event_loop()``."""
    script = _script(tmp_path, """
        import asyncio, warnings
        warnings.simplefilter("ignore", DeprecationWarning)    # 3.14+: policies
        async def main():
            return type(asyncio.get_running_loop()).__module__
        def kinds():
            loop = asyncio.new_event_loop()
            policy_loop = asyncio.get_event_loop_policy().new_event_loop()
            loop.close(); policy_loop.close()
            return (type(loop).__module__, type(policy_loop).__module__,
                    asyncio.run(main()))
        print(kinds())
        asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
        print(kinds())
        asyncio.set_event_loop_policy(None)
        print(kinds())
    """)
    out = _run([*TREADLE, "run", str(script)])
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(("treadle._loop",) * 3)] * 3


def test_run_pytest_gives_no_rewrite_warning_and_rewrites_tests(tmp_path):
    """``treadle run -m pytest``: treadle (a pytest plugin, imported before
    pytest starts) draws no PytestAssertRewriteWarning, which suites that
    turn warnings into errors would fail on, and the tests' own asserts
    are still rewritten."""
    (tmp_path / "test_sample.py").write_text(textwrap.dedent("""
        import asyncio
        def test_loop_is_treadles():
            async def main():
                return type(asyncio.get_running_loop()).__module__
            assert asyncio.run(main()) == "treadle._loop"
        def test_fails():
            x = 1
            assert x == 2
    """))
    out = _run([*TREADLE, "run", "-m", "pytest", "-p", "no:cacheprovider",
                "-p", "no:asyncio", "-W", "error", "test_sample.py"], cwd=tmp_path)
    assert "1 failed, 1 passed" in out.stdout, out.stdout + out.stderr
    assert "assert 1 == 2" in out.stdout             # rewritten: the value shown
    assert "PytestAssertRewriteWarning" not in out.stdout + out.stderr


def test_run_script_dir_on_path(tmp_path):
    (tmp_path / "helper_mod_xyz.py").write_text("VALUE = 3\n")
    script = _script(tmp_path, "import helper_mod_xyz; print(helper_mod_xyz.VALUE)\n")
    out = _run([*TREADLE, "run", str(script)], cwd="/")
    assert out.stdout.strip() == "3", out.stderr


def test_run_script_gets_the_module_attributes_python_gives_it(tmp_path):
    """``treadle run script.py`` sets up ``__main__`` as ``python script.py``
    does: an absolute ``__file__`` (a script that changes directory can
    still find its files), a SourceFileLoader, the script's directory as
    sys.path[0] and not the ``treadle`` command's, sys.argv[0] as given."""
    _script(tmp_path, """
        import os, pickle, sys
        os.chdir("/")
        class Thing: pass
        print(os.path.isabs(__file__), open(__file__).read().startswith("\\n"),
              type(__loader__).__name__, __spec__, sys.argv[0],
              sys.path[0] == os.path.dirname(os.path.realpath(__file__)),
              sys.path.count(os.path.dirname(sys.executable)),
              type(pickle.loads(pickle.dumps(Thing()))).__name__,
              sys.modules["__main__"].__dict__ is globals())
    """)
    plain = _run([sys.executable, "script.py"], cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split() == ["True", "True", "SourceFileLoader", "None",
                                    "script.py", "True", "0", "Thing", "True"]
    for command in (TREADLE, [str(Path(sys.executable).parent / "treadle")]):
        if not os.path.exists(command[0]):
            continue
        out = _run([*command, "run", "script.py"], cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout == plain.stdout


def test_error_shows_script_traceback_and_exits_1(tmp_path):
    script = _script(tmp_path, """
        import asyncio
        async def main():
            raise ValueError("broken script")
        asyncio.run(main())
    """)
    out = _run([*TREADLE, "run", str(script)])
    assert out.returncode == 1
    assert out.stderr.startswith("Traceback (most recent call last):\n"
                                 f'  File "{script}"'), out.stderr
    assert "ValueError: broken script" in out.stderr
    assert "runpy" not in out.stderr and "_cli.py" not in out.stderr
    # the same as plain python shows, frame for frame
    plain = _run([sys.executable, str(script)])
    assert plain.returncode == 1
    assert out.stderr.splitlines()[:3] == plain.stderr.splitlines()[:3]


def test_sys_exit_code_propagates(tmp_path):
    script = _script(tmp_path, "import sys; sys.exit(7)\n")
    assert _run([*TREADLE, "run", str(script)]).returncode == 7


def test_missing_script(tmp_path):
    out = _run([*TREADLE, "run", str(tmp_path / "nope.py")])
    assert out.returncode == 2
    assert "can't open file" in out.stderr


def test_run_module(tmp_path):
    (tmp_path / "mymod_treadle_cli.py").write_text(textwrap.dedent("""
        import asyncio, sys
        async def main():
            print(type(asyncio.get_running_loop()).__name__, sys.argv[1:])
        if __name__ == "__main__":
            asyncio.run(main())
    """))
    out = _run([*TREADLE, "run", "-m", "mymod_treadle_cli", "x"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "SelectorEventLoop ['x']"
    # As with python -m, what follows the module is the module's, options
    # included, even those treadle run has too.
    out = _run([*TREADLE, "run", "--seed", "3", "-m", "mymod_treadle_cli",
                "--workers", "2", "-m", "--seed", "x"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "SelectorEventLoop ['--workers', '2', '-m', '--seed', 'x']"


def test_console_script_installed():
    exe = Path(sys.executable).with_name("treadle")
    if not exe.exists():
        pytest.skip("console script not installed next to this interpreter")
    out = _run([str(exe), "--version"])
    assert out.returncode == 0 and out.stdout.startswith("treadle ")


def test_ctrl_c_cancels_main_and_exits_like_python(tmp_path):
    script = _script(tmp_path, """
        import asyncio, sys
        async def main():
            print("ready", flush=True)
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                print("main cancelled", flush=True)
                raise
        asyncio.run(main())
    """)
    # (A shell's background job inherits SIGINT ignored: the child would
    # never see Ctrl-C.  Give it the default, as a terminal's program has.)
    proc = subprocess.Popen([*TREADLE, "run", str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "main cancelled" in out
    assert "KeyboardInterrupt" in err
    assert proc.returncode in (-signal.SIGINT, 130)


def test_breakfast_example_output_matches_asyncio():
    example = Path(__file__).resolve().parents[1] / "examples" / "breakfast.py"
    if not example.exists():
        pytest.skip("examples not available")
    env = dict(os.environ)
    a = _run([sys.executable, str(example)], env=env)
    t = _run([*TREADLE, "run", str(example)], env=env)
    assert a.returncode == t.returncode == 0
    assert a.stdout == t.stdout
    assert t.stdout.splitlines()[-1] == "breakfast: tea and toast in 5 seconds"
