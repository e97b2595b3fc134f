"""Bad input, differentially: generated sequences of loop calls, with valid
and invalid arguments, run on asyncio's loop and on treadle's; treadle must
do what asyncio does (return the same kind of thing, raise the same
exception type with the same message up to reprs, report the same to the
exception handler, log the same warnings), except where
``differential.ALLOWED`` lists a documented difference.

Every public method of ``asyncio.AbstractEventLoop`` is in the catalogue
(``differential.METHODS``; the first test checks that).  asyncio is the
running Python's, so each version is compared with its own asyncio.

Settings: the ``ci`` profile (the default) runs a fixed, bounded set of
examples (``derandomize``: the same ones on every run); set
``TREADLE_DIFFERENTIAL=explore`` for a long random search.  A failure
prints the sequence of calls and both loops' outcomes.
"""

from __future__ import annotations

import asyncio
import functools
import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import treadle  # noqa: E402

from . import differential as d  # noqa: E402

settings.register_profile(
    "ci", max_examples=250, derandomize=True, deadline=None, database=None,
    print_blob=True, suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])
settings.register_profile(
    "explore", max_examples=5000, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PROFILE = settings.get_profile(os.environ.get("TREADLE_DIFFERENTIAL", "ci"))


def test_catalogue_covers_the_abstract_loop() -> None:
    public = {name for name in dir(asyncio.AbstractEventLoop) if not name.startswith("_")}
    assert public == set(d.METHODS)


# ----------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------

@functools.cache
def _value(param: d.Param) -> st.SearchStrategy[str]:
    """Mostly what a program would pass, often a wrong value."""
    wrong = tuple(dict.fromkeys(param.bad + param.generic))
    good = st.sampled_from(param.good)
    return st.one_of(good, good, st.sampled_from(wrong))


_METHOD_NAMES = st.sampled_from(sorted(d.METHODS))
_SIGNATURE_ERRORS = st.sampled_from(["extra keyword", "missing", "extra positional"])


@st.composite
def calls(draw: st.DrawFn, method: str | None = None) -> d.Call:
    name = method or draw(_METHOD_NAMES)
    spec = d.METHODS[name]
    args: list[str] = []
    kwargs: list[tuple[str, str]] = []
    positional = True           # still passing parameters by position
    for param in spec.params:
        if not param.required and not draw(st.integers(0, 2)):
            positional = positional and param.kind == d.KW
            continue
        token = draw(_value(param))
        by_position = param.kind == d.POS or (
            param.kind == d.EITHER and positional and draw(st.booleans()))
        if by_position and positional:
            args.append(token)
        else:
            positional = False
            kwargs.append((param.name, token))
    if spec.varargs is not None and positional and len(args) == len(
            [p for p in spec.params if p.kind != d.KW]) and draw(st.integers(0, 3)) == 0:
        args.extend(draw(st.lists(st.sampled_from(spec.varargs), max_size=2)))
    # A call that does not fit the signature, now and then (always for the
    # methods that would do nothing testable with a valid call).
    signature = ""
    if not spec.valid_ok or draw(st.integers(0, 9)) == 0:
        signature = draw(_SIGNATURE_ERRORS)
        if signature == "extra keyword":
            kwargs.append(("bogus", "int:1"))
        elif signature == "missing" and args:
            args.pop(0)
        else:
            signature = "extra positional"
            if spec.varargs is None:
                args.extend(["int:1"] * (len(spec.params) + 1 - len(args)))
                kwargs = []
            else:
                signature = "extra keyword"
                kwargs.append(("bogus", "int:1"))
    return d.Call(name, tuple(args), tuple(kwargs), signature)


sequences = st.lists(calls(), min_size=1, max_size=5)


def check(sequence: list[d.Call], directory: str) -> None:
    ran_asyncio = d.run_calls(asyncio.new_event_loop, sequence, directory)
    ran_treadle = d.run_calls(treadle.new_event_loop, sequence, directory)
    found = d.differences(sequence, ran_asyncio, ran_treadle)
    assert not found, "treadle differs from asyncio:\n" + "\n".join(found)


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("differential"))


@settings(PROFILE)
@given(sequence=sequences)
def test_loop_calls_match_asyncio(directory: str, sequence: list[d.Call]) -> None:
    check(sequence, directory)
