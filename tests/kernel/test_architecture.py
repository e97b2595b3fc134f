"""The kernel's place in the layering (treadle only): it imports no layer
above it, and it runs a program on its own, with no networking,
processes or testing layer mixed in."""

from __future__ import annotations

import ast
import asyncio
import pathlib
import socket

import treadle
from treadle._kernel.layers import Layer
from treadle._kernel.loop import KernelLoop, LoopLayers

KERNEL = pathlib.Path(treadle.__file__).parent / "_kernel"
ABOVE = ("_net", "_proc", "_scopes", "testing", "bench", "_loop", "_runner", "_cli")


def _imported(path: pathlib.Path) -> set[str]:
    """The treadle modules *path* imports, as names relative to the package."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("treadle."):
                    names.add(node.module.split(".", 1)[1])
            elif node.level >= 2:           # from ..x import y: treadle.x
                names.add(node.module or "")
                if not node.module:
                    names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".", 1)[1] for a in node.names
                         if a.name.startswith("treadle."))
    return names


def test_the_kernel_imports_no_layer_above_it():
    sources = sorted(KERNEL.glob("*.py"))
    assert len(sources) > 5, sources            # the scan sees the kernel
    wrong = {p.name: sorted(n for n in _imported(p) if n.split(".")[0] in ABOVE)
             for p in sources}
    assert not {k: v for k, v in wrong.items() if v}


def test_the_scan_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from .._net import stream\nfrom ..testing.clock import X\n"
                   "import treadle._proc.pipes\nfrom . import handles\n")
    assert {"_net", "testing.clock", "_proc.pipes"} <= _imported(bad)
    assert "handles" not in _imported(bad)


def test_a_bare_kernel_loop_runs_coroutines_timers_callbacks_and_readers():
    loop = KernelLoop()
    a, b = socket.socketpair()
    try:
        events = []

        async def main():
            loop.call_soon(events.append, "callback")
            loop.call_later(0.001, events.append, "timer")
            readable = loop.create_future()
            loop._add_reader(b.fileno(), lambda: readable.set_result(b.recv(10)))
            a.send(b"ping")
            events.append(await readable)
            loop._remove_reader(b.fileno())
            await asyncio.sleep(0.002)
            child = loop.create_task(asyncio.sleep(0, "child"))
            events.append(await child)
            return "done"

        assert loop.run_until_complete(main()) == "done"
        assert sorted(events, key=str) == sorted(["callback", b"ping", "timer", "child"],
                                                 key=str)
    finally:
        a.close()
        b.close()
        loop.close()


def _kernel_names_a_layer_defines(loop_class: type) -> dict[str, list[str]]:
    """Layer classes of *loop_class* (those after KernelLoop in its MRO,
    before LoopLayers) -> the names each defines that KernelLoop defines
    too: methods no call would reach, since KernelLoop comes first."""
    mro = loop_class.__mro__
    layers = mro[mro.index(KernelLoop) + 1:mro.index(LoopLayers)]
    # (Dunders every class body gets - __firstlineno__, __static_attributes__
    # on 3.13+ - are no methods; the pure build's KernelLoop has them.)
    own = {n for n in vars(KernelLoop) if not (n.startswith("__") and n.endswith("__"))}
    found = {cls.__name__: sorted(own & set(vars(cls))) for cls in layers}
    return {name: names for name, names in found.items() if names}


def test_the_kernel_leads_the_loops_mro_and_no_layer_shadows_its_methods():
    # KernelLoop second: a Python call into a compiled loop method checks
    # self's type by walking the MRO up to KernelLoop (see LoopLayers).
    mro = treadle.EventLoop.__mro__
    assert mro[1] is KernelLoop
    assert mro.index(LoopLayers) > 5            # the layers lie in between
    assert _kernel_names_a_layer_defines(treadle.EventLoop) == {}


def test_the_check_sees_a_layer_that_redefines_a_kernel_method():
    class CallingLayer(Layer):
        def call_soon(self, *args, **kwargs):      # never reached
            raise AssertionError

        def _layers_init(self) -> None:            # a hook: fine
            super()._layers_init()

    class Loop(KernelLoop, CallingLayer):
        pass

    assert _kernel_names_a_layer_defines(Loop) == {"CallingLayer": ["call_soon"]}
    loop = Loop()
    try:
        loop.call_soon(lambda: None)                # the kernel's, not the layer's
    finally:
        loop.close()
