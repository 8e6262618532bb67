"""Flow checks beyond structure: a flow that passes leaves no caller in silence, on a
wrong prompt or at a dead end.

- every node named as a target exists; every node is reachable from the start;
- from every node some path reaches a node that ends the IVR (queue, transfer, hangup,
  return); a group of nodes with no way out is reported as a loop with no exit;
- no loop is made only of branch/goto nodes (it would spin without a sound);
- every prompt exists in every language of the flow, and its files exist;
- menus and language choices use distinct keys; variables, calendars, lists, sources
  and sub-flows that nodes name are defined.

`check_paths(paths) -> list[str]` is what `ctictl check-config` prints.
"""
from __future__ import annotations

import os

from .flow import (BUILTIN_VARS, INSTANT_TYPES, TERMINAL_TYPES, CatalogRef, Cond, FileRef,
                   Flow, FlowError, FlowSet, Issue, SayText, SayValue, Template, flow_files,
                   load_flow)
from .speech import SAYERS, SpeechError


def _graph(flow: Flow) -> dict[str, list[str]]:
    return {nid: [t for t in n.exits.values() if t in flow.nodes] for nid, n in flow.nodes.items()}


def _sccs(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on.add(v)
            succ = graph[v]
            if i < len(succ):
                work.append((v, i + 1))
                w = succ[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out


def _prompt_items(node) -> list:
    items = []
    for key in ("prompt", "invalid_prompt", "timeout_prompt", "wait_prompt"):
        items += list(node.opts.get(key) or ())
    return items


def _cond_parts(cond: Cond):
    yield cond
    if cond.op in ("all", "any"):
        for c in cond.args:
            yield from _cond_parts(c)
    elif cond.op == "not":
        yield from _cond_parts(cond.args)


def _assigned_vars(flow: Flow, flows: FlowSet | None = None, seen=None) -> set[str]:
    """Variables the flow (and the sub-flows it calls: variables are per call) can set."""
    seen = set() if seen is None else seen
    seen.add(flow.name)
    out = set(BUILTIN_VARS) | set(flow.vars)
    for n in flow.nodes.values():
        if n.type == "subflow" and flows is not None and n.opts["flow"] in flows \
                and n.opts["flow"] not in seen:
            out |= _assigned_vars(flows[n.opts["flow"]], flows, seen)
        if n.type in ("collect", "menu", "voicemail") and n.opts.get("var"):
            out.add(n.opts["var"])
        elif n.type == "set":
            out |= set(n.opts["vars"])
        elif n.type == "lookup":
            out |= set(n.opts["result"])
    return out


def _used_templates(node) -> list[Template]:
    out = []
    for item in _prompt_items(node):
        if isinstance(item, (SayText,)):
            out.append(item.text)
        elif isinstance(item, SayValue):
            out.append(item.value)
    for key, val in node.opts.items():
        if isinstance(val, Template):
            out.append(val)
        elif isinstance(val, dict):
            out += [v for v in val.values() if isinstance(v, Template)]
            if key == "http":
                out.append(val["url"])
                out += list(val["body"].values())
    return out


def validate(flow: Flow, flows: FlowSet | None = None) -> list[Issue]:
    issues: list[Issue] = []

    def add(line, node, msg):
        issues.append(flow.issue(line, node, msg))

    nodes = flow.nodes
    # -- targets --------------------------------------------------------------------------
    if flow.start not in nodes:
        add(flow.start_line, "", f"start names unknown node {flow.start!r}")
    if flow.on_max_duration and flow.on_max_duration not in nodes:
        add(flow.line_of.get("on_max_duration", 1), "",
            f"on_max_duration names unknown node {flow.on_max_duration!r}")
    for n in nodes.values():
        for label, target in n.exits.items():
            if target not in nodes:
                add(n.exit_lines.get(label, n.line), n.id,
                    f"{label} goes to unknown node {target!r}")

    # -- reachability -----------------------------------------------------------------------
    graph = _graph(flow)
    seen: set[str] = set()
    todo = [r for r in (flow.start, flow.on_max_duration) if r in nodes]
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo += graph[v]
    for n in nodes.values():
        if n.id not in seen and flow.start in nodes:
            add(n.line, n.id, "unreachable: no path from the start leads here")

    # -- ways out ---------------------------------------------------------------------------
    reverse: dict[str, list[str]] = {v: [] for v in graph}
    for v, succ in graph.items():
        for w in succ:
            reverse[w].append(v)
    can_end = {nid for nid, n in nodes.items() if n.type in TERMINAL_TYPES}
    todo = list(can_end)
    while todo:
        v = todo.pop()
        for u in reverse[v]:
            if u not in can_end:
                can_end.add(u)
                todo.append(u)
    trapped = set(nodes) - can_end
    for comp in _sccs(graph):
        cyclic = len(comp) > 1 or comp[0] in graph[comp[0]]
        members = sorted(comp, key=lambda c: nodes[c].line)
        first = nodes[members[0]]
        if cyclic and comp[0] in trapped:
            add(first.line, first.id, f"loop with no exit: {' -> '.join(members)} "
                                      f"never reaches a queue, transfer, hangup or return")
            trapped -= set(comp)
        elif cyclic and all(nodes[c].type in INSTANT_TYPES for c in comp) \
                and not any(nodes[c].type == "set" for c in comp):
            add(first.line, first.id, f"loop of branch/goto nodes ({' -> '.join(members)}) "
                                      f"would spin with the caller hearing nothing")
    for nid in sorted(trapped, key=lambda c: nodes[c].line):
        add(nodes[nid].line, nid, "dead end: no path from here reaches a queue, transfer, "
                                  "hangup or return")

    # -- per-node checks ------------------------------------------------------------------
    assigned = _assigned_vars(flow, flows)
    for n in nodes.values():
        for item in _prompt_items(n):
            issues += _check_prompt(flow, n, item)
        for tmpl in _used_templates(n):
            for var in sorted(tmpl.vars):
                if var not in assigned and not var.startswith("data."):
                    add(n.line, n.id, f"variable {var!r} is never set (declare it under vars:)")
        if n.type == "menu":
            rk = n.opts["repeat_key"]
            if rk and rk in n.opts["options"]:
                add(n.key_lines.get("repeat_key", n.line), n.id,
                    f"repeat_key {rk!r} is also an option key")
        if n.type == "language":
            for key, lang in n.opts["options"].items():
                if lang not in flow.languages:
                    add(n.key_lines.get("options", n.line), n.id,
                        f"option {key!r} chooses language {lang!r}, which is not in the "
                        f"flow's languages ({', '.join(flow.languages)})")
        if n.type == "lookup":
            src = flow.sources.get(n.opts["source"])
            kind = "sql" if n.opts["sql"] is not None else "http"
            if src is None:
                add(n.key_lines.get("source", n.line), n.id,
                    f"unknown source {n.opts['source']!r} (define it under sources:)")
            elif src.kind != kind:
                add(n.key_lines.get("source", n.line), n.id,
                    f"source {src.name!r} is {src.kind}, but the node asks by {kind}")
        if n.type == "branch":
            for cond, _, cline in n.opts["cases"]:
                for part in _cond_parts(cond):
                    if part.op in ("open", "closed", "holiday") and part.args not in flow.calendars:
                        add(cline, n.id, f"unknown calendar {part.args!r}")
                    if part.op == "in_list" and part.args[0] not in flow.lists:
                        add(cline, n.id, f"unknown list {part.args[0]!r}")
                    if part.op == "in_list" and part.args[1] not in assigned \
                            and not part.args[1].startswith("data."):
                        add(cline, n.id, f"variable {part.args[1]!r} is never set")
                    if part.op == "var" and part.args[0] not in assigned \
                            and not part.args[0].startswith("data."):
                        add(cline, n.id, f"variable {part.args[0]!r} is never set")
        if n.type == "return" and flow.kind != "subflow":
            add(n.line, n.id, "return is only allowed in a flow of kind subflow")
        if n.type == "subflow" and flows is not None:
            target = flows.flows.get(n.opts["flow"])
            if target is None:
                add(n.key_lines.get("flow", n.line), n.id, f"unknown flow {n.opts['flow']!r}")
            elif target.kind != "subflow":
                add(n.key_lines.get("flow", n.line), n.id,
                    f"flow {target.name!r} is not of kind subflow (it has no return)")
    if flow.kind == "subflow" and not any(n.type == "return" for n in nodes.values()):
        add(flow.line_of.get("kind", 1), "", "a subflow needs at least one return node")
    return issues


def _check_prompt(flow: Flow, node, item) -> list[Issue]:
    out = []
    if isinstance(item, CatalogRef):
        p = flow.prompts.get(item.name)
        if p is None:
            out.append(flow.issue(node.line, node.id, f"missing prompt {item.name!r}"))
            return out
        for lang in flow.languages:
            entry = p.by_lang.get(lang) or p.by_lang.get("*")
            if entry is None:
                out.append(flow.issue(node.line, node.id,
                                      f"prompt {item.name!r} has no {lang} version"))
            elif entry.file and not os.path.isfile(entry.file):
                out.append(flow.issue(node.line, node.id,
                                      f"prompt {item.name!r} ({lang}): missing file {entry.file}"))
            elif not entry.file and not entry.text.strip():
                out.append(flow.issue(node.line, node.id, f"prompt {item.name!r} ({lang}) is empty"))
    elif isinstance(item, FileRef) and not os.path.isfile(item.path):
        out.append(flow.issue(node.line, node.id, f"missing prompt file {item.path}"))
    elif isinstance(item, SayValue) and item.value.static:
        try:
            SAYERS[item.kind](item.value.text)
        except SpeechError as e:
            out.append(flow.issue(node.line, node.id, str(e)))
    elif isinstance(item, SayText) and not item.text.text.strip():
        out.append(flow.issue(node.line, node.id, "say: the text is empty"))
    return out


def validate_set(flows: FlowSet) -> list[Issue]:
    issues = []
    for flow in flows.flows.values():
        issues += validate(flow, flows)
    return issues


def check_paths(paths) -> list[str]:
    """Load and validate flow files and folders; every problem as 'file:line: node: text'."""
    errors: list[str] = []
    flows = FlowSet()
    for path in flow_files(paths):
        try:
            flow = load_flow(path)
        except FlowError as e:
            errors += [str(i) for i in e.issues]
            continue
        try:
            flows.add(flow)
        except FlowError as e:
            errors += [str(i) for i in e.issues]
    errors += [str(i) for i in validate_set(flows)]
    return errors


def load_checked(paths) -> FlowSet:
    """Load and validate, raising FlowError with every issue (what ctid does at start)."""
    issues: list[Issue] = []
    flows = FlowSet()
    for path in flow_files(paths):
        try:
            flows.add(load_flow(path))
        except FlowError as e:
            issues += e.issues
    issues += validate_set(flows)
    if issues:
        raise FlowError(issues)
    return flows
