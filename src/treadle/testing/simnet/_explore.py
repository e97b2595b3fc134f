"""Exploring schedules and faults, and shrinking a failing run.

Owns: running a scenario many times under a strategy until it fails -
``random`` (a new seed each run, as ``--treadle-shuffle``), ``pct``
(probabilistic concurrency testing, one seed per run) and ``systematic``
(every run with at most *k* deviations from the plain run, nearest first)
- and shrinking a failing run to the fewest deviations that still fail
(delta debugging on the record, then smaller answers), so that what is
replayed and read is the smallest story of the failure.
Never: decides what failing means beyond "the scenario raised an
exception of the same type", and never reuses state between runs: each
run is a fresh ``SimNetwork`` on a fresh loop.
"""

from __future__ import annotations

from typing import Any, Callable

from ._choices import PCTSource, RandomSource, ReplaySource, Source, format_deviations


class Exploration:
    """What ``explore()`` found."""

    def __init__(self, strategy: str) -> None:
        self.strategy = strategy
        #: Runs made until the first failure (or in all, if none failed).
        self.runs = 0
        self.failure: BaseException | None = None
        #: The seed of the failing run (random and pct).
        self.seed: int | None = None
        #: The failing run's deviations, shrunk if asked.
        self.deviations: dict[int, float] = {}
        self.original_deviations = 0
        self.shrink_runs = 0

    @property
    def found(self) -> bool:
        return self.failure is not None

    @property
    def replay(self) -> str:
        """The deviations as ``--treadle-replay`` / ``replay()`` take them."""
        return format_deviations(self.deviations)

    def __repr__(self) -> str:
        if not self.found:
            return f"<Exploration {self.strategy}: no failure in {self.runs} runs>"
        return (f"<Exploration {self.strategy}: {type(self.failure).__name__} after "
                f"{self.runs} runs, seed={self.seed}, replay={self.replay!r}>")


def run_with(scenario: Callable[..., Any], source: Source, seed: int,
             options: dict[str, Any]) -> tuple[BaseException | None, Any]:
    """One run: (the exception it raised or None, its network)."""
    from ._network import SimNetwork
    net = SimNetwork(seed, source=source, **options)
    try:
        net.run(scenario)
    except Exception as exc:
        return exc, net
    return None, net


def replay(scenario: Callable[..., Any], deviations: dict[int, float] | str,
           seed: int = 0, **options: Any) -> Any:
    """Run *scenario* with exactly these deviations (every other decision
    the default): what ``Exploration.replay`` reproduces.  Returns the
    result, or raises what the run raised."""
    from ._choices import parse_deviations
    from ._network import SimNetwork
    if isinstance(deviations, str):
        deviations = parse_deviations(deviations)
    net = SimNetwork(seed, source=ReplaySource(dict(deviations)), **options)
    return net.run(scenario)


def explore(scenario: Callable[..., Any], *, strategy: str = "random", runs: int = 100,
            seed: int = 0, depth: int = 3, steps: int = 2000, max_deviations: int = 2,
            shrink_failure: bool = True, shrink_runs: int = 200,
            **options: Any) -> Exploration:
    """Run ``async def scenario(net)`` up to *runs* times under *strategy*
    until it raises; shrink the failure (``shrink_failure``).

    * ``random``: seeds *seed*, *seed*+1, ...: seeded shuffling of every
      batch plus the network's random decisions;
    * ``pct``: seeds as above, schedules from PCT with *depth* and an
      estimate of *steps* scheduling decisions per run;
    * ``systematic``: the plain run, then every run with 1, 2, ...,
      *max_deviations* deviations from it, earliest decisions first.
    """
    if strategy not in ("random", "pct", "systematic"):
        raise ValueError(f"strategy must be random, pct or systematic, not {strategy!r}")
    if runs < 1:
        raise ValueError("explore() needs at least one run")
    result = Exploration(strategy)
    failure: BaseException | None = None
    net: Any = None
    if strategy == "systematic":
        failure, net, result.runs = _systematic(scenario, seed, runs, max_deviations,
                                                options)
        run_seed = seed
    else:
        run_seed = seed
        for i in range(runs):
            run_seed = seed + i
            source: Source = (RandomSource(run_seed) if strategy == "random"
                              else PCTSource(run_seed, depth=depth, steps=steps))
            failure, net = run_with(scenario, source, run_seed, options)
            result.runs = i + 1
            if failure is not None:
                break
    if failure is None:
        return result
    result.failure = failure
    result.seed = run_seed
    deviations = net.choices.deviations()
    result.original_deviations = len(deviations)
    if shrink_failure:
        deviations, result.shrink_runs = shrink(scenario, deviations, type(failure),
                                                seed=run_seed, max_runs=shrink_runs,
                                                **options)
    result.deviations = deviations
    return result


def _systematic(scenario: Callable[..., Any], seed: int, runs: int, max_deviations: int,
                options: dict[str, Any]) -> tuple[BaseException | None, Any, int]:
    failure, net = run_with(scenario, ReplaySource({}), seed, options)
    count = 1
    if failure is not None:
        return failure, net, count
    frontier: list[tuple[dict[int, float], int, list[int]]] = [
        ({}, -1, list(net.choices.arity))]
    while frontier:
        next_frontier = []
        for deviations, last, arity in frontier:
            for position in range(last + 1, len(arity)):
                for value in range(1, arity[position]):
                    if count >= runs:
                        return None, None, count
                    child = dict(deviations)
                    child[position] = value
                    failure, net = run_with(scenario, ReplaySource(child), seed, options)
                    count += 1
                    if failure is not None:
                        return failure, net, count
                    if len(child) < max_deviations:
                        next_frontier.append((child, position, list(net.choices.arity)))
        frontier = next_frontier
    return None, None, count


def shrink(scenario: Callable[..., Any], deviations: dict[int, float],
           failure_type: type[BaseException] = Exception, *, seed: int = 0,
           max_runs: int = 200, **options: Any) -> tuple[dict[int, float], int]:
    """The fewest of *deviations* (then the smallest answers) under which
    *scenario* still raises *failure_type*; and how many runs it took.
    Deviations not kept are decided the default way."""

    def fails(candidate: dict[int, float]) -> dict[int, float] | None:
        failure, net = run_with(scenario, ReplaySource(candidate), seed, options)
        if failure is not None and isinstance(failure, failure_type):
            found: dict[int, float] = net.choices.deviations()
            return found      # what the run really deviated in
        return None

    return shrink_with(fails, deviations, max_runs)


def shrink_with(fails: Callable[[dict[int, float]], dict[int, float] | None],
                deviations: dict[int, float], max_runs: int = 200,
                ) -> tuple[dict[int, float], int]:
    """Shrinking itself: *fails(candidate)* replays the deviations
    *candidate* and returns the deviations of the run if it still failed
    (None if it passed)."""
    runs = 0

    def attempt(candidate: dict[int, float]) -> dict[int, float] | None:
        nonlocal runs
        runs += 1
        return fails(candidate)

    current = dict(deviations)
    exact = attempt(current)
    if exact is None:
        return current, runs        # does not replay: keep it as it is
    current = exact
    # 1. Delta debugging: drop chunks of deviations while it still fails.
    chunks = 2
    while len(current) >= 1 and runs < max_runs:
        keys = sorted(current)
        size = max(1, len(keys) // chunks)
        removed = False
        for start in range(0, len(keys), size):
            if runs >= max_runs:
                break
            drop = set(keys[start:start + size])
            candidate = {k: v for k, v in current.items() if k not in drop}
            got = attempt(candidate)
            if got is not None and len(got) < len(current):
                current = got
                chunks = max(chunks - 1, 2)
                removed = True
                break
        if not removed:
            if size == 1:
                break
            chunks = min(chunks * 2, len(keys))
    # 2. Smaller answers: a pick of 1 instead of 3, no jitter instead of some.
    for key in sorted(current):
        if runs >= max_runs:
            break
        value = current.get(key)
        if value is None or value == 1 or value == 0:
            continue
        candidate = dict(current)
        candidate[key] = 1 if float(value).is_integer() else 0.0
        if candidate[key] == 0.0:
            del candidate[key]
        got = attempt(candidate)
        if got is not None and len(got) <= len(current):
            current = got
    return current, runs
