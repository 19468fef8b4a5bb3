"""The house: dependencies point only downward, with no cycles and nothing importing the CLI.

Layers, bottom to top: core (the NumPy network) → networks (config → network) → config (the schema) → runs (data, training,
one run, tracking, store) → sweep (engine, files, agent) → report → cli. `mlp/errors.py` is a
leaf every layer may use; `mlp/__init__.py` and `mlp/__main__.py` are the package's facades.
"""
import ast

from helpers.paths import ROOT

PACKAGE = ROOT / "mlp"
RANK = {"errors": -1, "paths": -1, "core": 0, "networks": 0.5, "config": 1, "runs": 2, "sweep": 3, "report": 4, "cli": 5}
FACADES = {"mlp", "mlp.__main__"}
# Heavy or optional third-party imports that a module may defer into a function on purpose.
DEFERRED_OK = {"wandb", "sklearn", "scipy", "matplotlib", "threadpoolctl", "torch", "tqdm", "sweeps"}


def modules():
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def layer(module):
    parts = module.split(".")
    return RANK.get(parts[1]) if len(parts) > 1 else None


def imports(path, module, known):
    """(target module, line, at top level?) for every import of an mlp module in `path`."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "mlp" or name.split(".")[0] in DEFERRED_OK:
                found.append((name, node.lineno, id(node) in top_level))
    return found


def graph():
    known = modules()
    return known, {m: [(t, line, top) for t, line, top in imports(p, m, known) if t in known]
                   for m, p in known.items()}


def test_no_import_cycles():
    known, edges = graph()
    adjacency = {m: {t for t, _, _ in ts if t != m} for m, ts in edges.items() if m not in FACADES}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in adjacency.get(m, ()):
            if t in FACADES:
                continue
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in adjacency:
        if m not in state:
            visit(m)
    assert cycles == []


def test_dependencies_point_only_downward():
    known, edges = graph()
    upward = []
    for module, targets in edges.items():
        if module in FACADES:
            continue
        for target, line, _ in targets:
            if target in FACADES and target != module:
                upward.append(f"{module}:{line} imports the facade {target}")
            elif layer(target) is not None and layer(module) is not None and layer(target) > layer(module):
                upward.append(f"{module}:{line} -> {target}")
    assert upward == []


def test_nothing_imports_the_cli():
    known, edges = graph()
    into_cli = [f"{m} -> {t}" for m, ts in edges.items() for t, _, _ in ts
                if layer(t) == RANK["cli"] and layer(m) != RANK["cli"] and m != "mlp.__main__"]
    assert into_cli == []


def test_function_level_imports_only_defer_heavy_dependencies():
    """Inside functions, only heavy optional packages are imported (on purpose, for start-up
    time); project modules are imported at the top, except by the CLI, which loads a
    subcommand's layers only when that subcommand runs."""
    known = modules()
    late = []
    for module, path in known.items():
        if module in FACADES or layer(module) == RANK["cli"]:
            continue
        for target, line, top in imports(path, module, known):
            if not top and target.split(".")[0] == "mlp":
                late.append(f"{module}:{line} imports {target} inside a function")
    assert late == []


def test_every_module_is_in_a_layer():
    """A new module outside the layers would escape every check above."""
    assert [m for m in modules() if layer(m) is None and m not in FACADES] == []


# What trains a network or writes runs: the report must reach none of them, even indirectly.
WRITERS = {"mlp.runs.experiment", "mlp.runs.training", "mlp.runs.estimator", "mlp.runs.tracking", "mlp.runs.baselines",
           "mlp.sweep.agent", "mlp.sweep.warm", "mlp.sweep.bridge", "mlp.sweep.rerun", "mlp.sweep.models",
           "mlp.sweep.baselines"}


def test_the_report_only_reads():
    """`mlp report` renders from the store and model files: no module of mlp/report imports,
    directly or through others, anything that trains or writes runs (the import, the best model's
    download or retrain, reruns and baselines run before it, from the CLI)."""
    known, edges = graph()
    reached = {}
    todo = [(m, m) for m in known if layer(m) == RANK["report"]]
    while todo:
        module, via = todo.pop()
        for target, _, _ in edges.get(module, ()):
            if target not in reached and target not in FACADES:
                reached[target] = via
                todo.append((target, via))
    assert {m: reached[m] for m in WRITERS if m in reached} == {}
    assert WRITERS <= set(known)          # the list names real modules


def test_the_store_path_is_decided_at_the_edge():
    """`--store`, else MLP_STORE, else ./mlp-runs.sqlite is decided once, by the command line, and
    passed down as an argument: no module below the CLI looks the store up in the environment
    (the agent only hands its store to the runs it launches, as W&B's agent hands them its ids)."""
    readers = []
    for module, path in modules().items():
        if layer(module) == RANK["cli"] or module in FACADES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == \
                    "default_store_path" and module != "mlp.runs.store.records":
                readers.append(f"{module}:{node.lineno} calls default_store_path()")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get" and node.args and \
                    isinstance(node.args[0], ast.Constant) and node.args[0].value == "MLP_STORE" and \
                    module != "mlp.runs.store.records":
                readers.append(f"{module}:{node.lineno} reads MLP_STORE")
    assert readers == []
