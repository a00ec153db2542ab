#!/usr/bin/env python3
"""Checks the shape of src/: no import cycle between source files, no file over 600 lines,
and plugins (the cluster, and any listener added next to it) wired only by the startup code:
the core never imports them (docs/architecture.md).

An edge A -> B means a `use` line or an inline path in A names something defined in B
(`crate::x::y`, `super::z`, `self::w`). A name that a folder's mod.rs re-exports
(`pub use child::Name`) counts as the child's, so a child using its parent's re-export is
not a cycle. `mod child;` declarations are not edges. src/bin is left out.

  scripts/check-modules.py [SRC]        exit status 1 on any finding
"""
import os
import re
import sys

MAX_LINES = 600
# Plugin modules (folders or files under src/) and who outside them may import them: the
# startup code that wires plugins, config validation (the Redis TLS certificates), and the
# fuzz targets' entry points (fuzzing.rs, compiled only by `cargo fuzz`: it feeds the
# cluster's Redis reader, and is no part of the server).
PLUGINS = {"cluster": {"server.rs", "config/redis.rs", "fuzzing.rs"}, "webhooks": {"server.rs"}}
# The live debug console: wired by the startup code only.
PLUGINS["console"] = {"server.rs"}
# Prometheus metrics: a listener and a renderer, wired in server.rs only.
PLUGINS["metrics"] = {"server.rs"}

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)(::\{[^;]*?\})?", re.S)
REEXPORT = re.compile(r"pub(?:\([a-z]+\))?\s+use\s+(?:self::)?([a-z_][a-z0-9_]*)::(\{[^;]*\}|[A-Za-z_][A-Za-z0-9_]*)\s*;", re.S)


def strip(code):
    """Code without comments and string literals (their text is not an import)."""
    code = re.sub(r"//[^\n]*", "", code)
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', code)


def modules(src):
    """Module path (tuple of names) -> file, for every .rs under src (src/bin left out)."""
    found = {}
    for dirpath, dirnames, files in os.walk(src):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != os.path.join(src, "bin")]
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.relpath(os.path.join(dirpath, f), src)
            parts = path[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = []
            found[tuple(parts)] = path
    return found


def reexports(src, mods):
    """For each module file, the names it re-exports from a child: name -> child module."""
    out = {}
    for mod, path in mods.items():
        names = {}
        for child, items in REEXPORT.findall(strip(open(os.path.join(src, path)).read())):
            for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", items):
                names[name] = mod + (child,)
        out[mod] = names
    return out


def resolve(mods, exports, mod, segments):
    """The file that defines what `segments` (relative to module `mod`) names."""
    cur = mod
    for seg in segments:
        if cur + (seg,) in mods:
            cur = cur + (seg,)
        elif seg in exports.get(cur, {}) and exports[cur][seg] in mods:
            return mods[exports[cur][seg]]
        else:
            break
    return mods.get(cur)


def edges(src, mods, exports):
    graph = {path: set() for path in mods.values()}
    for mod, path in mods.items():
        code = strip(open(os.path.join(src, path)).read())
        is_dir = path.endswith("mod.rs") or path == "lib.rs"
        for root, rest, group in PATH.findall(code):
            segs = rest.split("::")[1:]
            if root == "crate":
                base = ()
            elif root == "self":
                base = mod if is_dir else mod[:-1]
            else:  # super: the parent of this file's module
                base = mod[:-1]
            heads = [segs]
            if group:
                heads = [segs + [g] for g in re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\b", group)]
            for s in heads:
                target = resolve(mods, exports, base, s)
                if target and target != path:
                    graph[path].add(target)
    return graph


def cycles(graph):
    """Strongly connected groups of more than one file (Tarjan)."""
    index, low, stack, on, groups, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return groups


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    mods = modules(src)
    graph = edges(src, mods, reexports(src, mods))
    problems = []
    for group in cycles(graph):
        problems.append("import cycle: " + ", ".join(group))
        for a in group:
            for b in sorted(graph[a] & set(group)):
                problems.append(f"  {a} -> {b}")
    for path in sorted(graph):
        lines = sum(1 for _ in open(os.path.join(src, path)))
        if lines > MAX_LINES:
            problems.append(f"{path}: {lines} lines (more than {MAX_LINES})")
        for plugin, allowed in PLUGINS.items():
            inside = lambda p: p.startswith(plugin + os.sep) or p == plugin + ".rs"
            if not inside(path) and path not in allowed and any(inside(t) for t in graph[path]):
                problems.append(f"{path} imports the plugin {plugin} (only {sorted(allowed)} may)")
    for p in problems:
        print(p)
    n_edges = sum(len(t) for t in graph.values())
    print(f"check-modules: {len(graph)} files, {n_edges} imports, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
