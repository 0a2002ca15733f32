"""The package's import graph: no cycles among aigc_tf modules, and no lower layer importing a higher one.

Every `import` is read from the source with `ast`, including imports inside functions (a function-level import
hides a cycle from Python's import machinery, not from the design). The layers, lowest first:

    foundation   compat, paths, seeding, flags, config, hardware, locks, plots, runs, distribute, callbacks, training
    data         data/*, metrics/*                      digits, corpora, and the scores computed on them
    serving      serving/*                              TF Serving's layout, config, check and client: no model code
    models       gan/*, vae/*, text/*                   each family's export writes the serving layout
    lessons      robustness/*                           attacks the classifier and asks the GAN's discriminator
    demo         demo
    cli          cli (the command table), commands (what each command does), __main__

A module may import its own layer (without a cycle) or any layer below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aigc_tf

PACKAGE = Path(aigc_tf.__file__).parent
LAYERS = [
    ("foundation", ["aigc_tf", "aigc_tf.compat", "aigc_tf.paths", "aigc_tf.seeding", "aigc_tf.flags", "aigc_tf.config",
                    "aigc_tf.hardware", "aigc_tf.locks", "aigc_tf.plots", "aigc_tf.runs", "aigc_tf.distribute",
                    "aigc_tf.callbacks", "aigc_tf.training"]),
    ("data", ["aigc_tf.data", "aigc_tf.metrics"]),
    ("serving", ["aigc_tf.serving"]),
    ("models", ["aigc_tf.gan", "aigc_tf.vae", "aigc_tf.text"]),
    ("lessons", ["aigc_tf.robustness"]),
    ("demo", ["aigc_tf.demo"]),
    ("cli", ["aigc_tf.cli", "aigc_tf.commands", "aigc_tf.__main__"]),
]


def module_names(package: Path = PACKAGE) -> dict[str, Path]:
    """`{dotted name: file}` for every module of the package (`aigc_tf.data` is `data/__init__.py`)."""
    names = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(source: str, modules: set[str]) -> set[str]:
    """The package modules a source imports, anywhere in it: `import a.b`, `from a.b import c`, and for
    `from a import b` the module `a.b` when there is one (the package `a` is only passed through), else `a`."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return found & modules


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    names = module_names(package)
    return {name: imports_of(path.read_text(encoding="utf-8"), set(names)) - {name} for name, path in names.items()}


def layer_of(module: str, layers=LAYERS) -> int:
    """The index of the layer holding `module`: the longest listed prefix wins (`aigc_tf.data.x` is in data)."""
    best, index = -1, None
    for i, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    if index is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layering.py")
    return index


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> ... -> a) per strongly connected group of two or more modules (Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_through(graph, group) for group in groups]


def _path_through(graph, group: list[str]) -> list[str]:
    """A readable cycle inside a strongly connected group, from its first member back to it."""
    start, members = group[0], set(group)
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for other in sorted(graph[path[-1]] & members):
            if other == start:
                return path + [start]
            if other not in path:
                paths.append(path + [other])
    return group


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    """`a (layer) imports b (higher layer)` for every import that reaches up."""
    return [f"{module} ({layers[layer_of(module, layers)][0]}) imports {other} ({layers[layer_of(other, layers)][0]})"
            for module, others in sorted(graph.items()) for other in sorted(others)
            if layer_of(other, layers) > layer_of(module, layers)]


# ---------------------------------------------------------------------------------------------------- the checker
def test_the_checker_finds_imports_inside_functions_and_both_kinds_of_violation(tmp_path):
    """A synthetic package: `low` imports `high` inside a function, and `high` imports `low` at the top."""
    package = tmp_path / "aigc_tf"
    (package / "serving").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "serving" / "__init__.py").write_text("")
    (package / "config.py").write_text("def f():\n    from aigc_tf.serving import client\n")
    (package / "serving" / "client.py").write_text("import aigc_tf.config\n")
    (package / "cli.py").write_text("from aigc_tf import config\nfrom aigc_tf.serving.client import ask\n")
    graph = import_graph(package)
    assert graph["aigc_tf.config"] == {"aigc_tf.serving.client"}
    assert graph["aigc_tf.cli"] == {"aigc_tf.config", "aigc_tf.serving.client"}
    assert cycles(graph) == [["aigc_tf.config", "aigc_tf.serving.client", "aigc_tf.config"]]
    assert upward_imports(graph) == ["aigc_tf.config (foundation) imports aigc_tf.serving.client (serving)"]

    (package / "config.py").write_text("X = 1\n")  # the upward import removed: both checks pass
    graph = import_graph(package)
    assert cycles(graph) == [] and upward_imports(graph) == []


def test_a_cycle_within_one_layer_is_found_too():
    graph = {"aigc_tf.serving.a": {"aigc_tf.serving.b"}, "aigc_tf.serving.b": {"aigc_tf.serving.c"},
             "aigc_tf.serving.c": {"aigc_tf.serving.a"}, "aigc_tf.serving.d": {"aigc_tf.serving.a"}}
    assert cycles(graph) == [["aigc_tf.serving.a", "aigc_tf.serving.b", "aigc_tf.serving.c", "aigc_tf.serving.a"]]
    assert upward_imports(graph) == []


# ---------------------------------------------------------------------------------------------------- the package
def test_every_module_is_in_a_layer():
    for module in module_names():
        layer_of(module)


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_module_imports_a_higher_layer():
    assert upward_imports(import_graph()) == []
