"""Shared driver for the analog line tests (FXS and FXO): feed inputs by tick, run
step tables, snapshot a line, and explore its state graph."""
import copy

from drivers.backends.base import HwEvent
from drivers.signaling import events as ev
from drivers.signaling.analog import SignalingError
from drivers.signaling.analog.timers import Timers

TICK = "tick"


def cmd(name, **args):
    return ("cmd", name, args)


def emit(event):
    return ev.Emit(event)


def cleared(cause, reason):
    return ev.Emit(ev.Cleared(cause=cause, reason=reason))


def feed(line, tick, what):
    if what == TICK:
        return line.on_tick(tick)
    if isinstance(what, HwEvent):
        return line.on_hw(what, tick)
    if isinstance(what, tuple) and what[0] == "cmd":
        return line.on_command(what[1], tick, **what[2])
    return line.on_media(what, tick)


def run(line, steps):
    """steps: (tick, input, expected actions, expected state or None)."""
    for i, (tick, what, expected, state) in enumerate(steps):
        got = feed(line, tick, what)
        assert got == expected, f"step {i} (tick {tick}, {what!r}): got {got}"
        if state is not None:
            assert line.state == state, f"step {i}: state {line.state}, expected {state}"


def snapshot(line):
    return {k: (dict(v._due) if isinstance(v, Timers) else copy.deepcopy(v))
            for k, v in vars(line).items()}


def explore(make_line, inputs):
    """Drive copies of the line through every input from every state it reaches; timers
    are driven by jumping to the earliest deadline. Returns {state: next states}."""
    start = make_line()
    edges, frontier, seen = {}, [(start, 0)], {start.state: 1}
    while frontier:
        line, now = frontier.pop()
        nexts = []
        for what in inputs:
            trial = copy.deepcopy(line)
            try:
                feed(trial, now + 1, what)
            except SignalingError:
                continue
            nexts.append((trial, now + 1))
        if line.timers._due:
            due = min(line.timers._due.values())
            trial = copy.deepcopy(line)
            trial.on_tick(due)
            nexts.append((trial, due))
        for trial, t in nexts:
            edges.setdefault(line.state, set()).add(trial.state)
            # a few representatives of each state (their inner data differ)
            if seen.get(trial.state, 0) < 4:
                seen[trial.state] = seen.get(trial.state, 0) + 1
                frontier.append((trial, t))
    return edges


def reach(edges, start):
    seen, todo = {start}, [start]
    while todo:
        for n in edges.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen
