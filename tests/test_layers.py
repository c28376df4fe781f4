"""The layers of docs/architecture.md hold: who may import whom, no import circles.

Which bmdkit modules a module imports is read from its source (every
``import`` statement, those inside functions included); what importing it
loads is seen in a fresh interpreter's ``sys.modules``.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import bmdkit

PACKAGE = Path(bmdkit.__file__).resolve().parent
ROOT = PACKAGE.parent


def _module_files():
    """``{dotted name: path}`` of every module of bmdkit (packages by their ``__init__``)."""
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = _module_files()


def _within(name, layer):
    return name == layer or name.startswith(layer + ".")


class _Imports(ast.NodeVisitor):
    """bmdkit modules imported by a module: all of them, and those imported when it loads."""

    def __init__(self, name, is_package):
        self.package = name if is_package else name.rpartition(".")[0]
        self.all, self.at_load, self._depth = set(), set(), 0

    def _add(self, target):
        implied = False
        while target:  # importing a.b.c runs a/__init__ and a/b/__init__ too ...
            # ... unless a/b is this module's own package (being imported already)
            if target in MODULES and not (implied and _within(self.package, target)):
                self.all.add(target)
                if self._depth == 0:
                    self.at_load.add(target)
            target, implied = target.rpartition(".")[0], True

    def visit_Import(self, node):
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node):
        base = node.module or ""
        if node.level:  # relative: from the package, one level up per extra dot
            anchor = self.package.split(".")[:len(self.package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        self._add(base)
        for alias in node.names:
            self._add(f"{base}.{alias.name}")  # a submodule
            if base == "bmdkit" and alias.name in bmdkit._EXPORTS:  # a lazy public name
                self._add(bmdkit._EXPORTS[alias.name])

    def _function(self, node):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function


def _graph():
    """``(every import, imports at load)``: ``{module: set of bmdkit modules it imports}``."""
    every, at_load = {}, {}
    for name, path in MODULES.items():
        visitor = _Imports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        every[name] = visitor.all - {name}
        at_load[name] = visitor.at_load - {name}
    return every, at_load


EVERY, AT_LOAD = _graph()


def _cycle(graph):
    """One import circle of ``graph`` as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


#: (layer, layers it must not import), by the import statements of all its modules.
FORBIDDEN = [
    ("bmdkit.io", ["bmdkit.nn"]),
    ("bmdkit.nn", ["bmdkit.io", "bmdkit.evaluation", "bmdkit.report", "bmdkit.cli"]),
    ("bmdkit.persistence", ["bmdkit.estimators"]),  # estimators register themselves in it
    ("bmdkit.memory", ["bmdkit"]),  # the neutral module both caches use imports no bmdkit
    ("bmdkit.defaults", ["bmdkit"]),  # read by the parser, the estimators and pretraining
    # the fold runner lies below every layer that fits folds
    ("bmdkit.folds", ["bmdkit.evaluation", "bmdkit.uncertainty", "bmdkit.tuning", "bmdkit.nn",
                      "bmdkit.estimators", "bmdkit.report", "bmdkit.cli"]),
    ("bmdkit.benchmarks", ["bmdkit.cli"]),  # the command imports the bench, not back
    ("bmdkit.archive", ["bmdkit.cli", "bmdkit.benchmarks"]),
]


def test_the_import_graph_is_read():
    # a module of each layer is found with what it is known to import
    assert {"bmdkit.checks", "bmdkit.io.readers"} <= EVERY["bmdkit.io.cache"]
    assert "bmdkit.persistence" in AT_LOAD["bmdkit.estimators"]
    assert "bmdkit.estimators" in AT_LOAD["bmdkit.scaleout"]
    assert "bmdkit.estimators" in EVERY["bmdkit.uncertainty"] - AT_LOAD["bmdkit.uncertainty"]
    assert {"bmdkit.folds"} <= AT_LOAD["bmdkit.uncertainty"] & AT_LOAD["bmdkit.evaluation"]


@pytest.mark.parametrize("layer, forbidden", FORBIDDEN, ids=[layer for layer, _ in FORBIDDEN])
def test_a_layer_imports_none_of_the_layers_above_it(layer, forbidden):
    found = sorted(f"{module} imports {target}" for module, targets in EVERY.items()
                   if _within(module, layer) for target in targets
                   if any(_within(target, f) for f in forbidden) and not _within(target, layer))
    assert found == []


def test_no_import_circles():
    # at load, a circle makes importing one of its modules fail, depending on which is
    # imported first; through imports inside functions too, none is left
    assert _cycle(AT_LOAD) is None
    assert _cycle(EVERY) is None
    assert _cycle({**AT_LOAD, "bmdkit.persistence": {"bmdkit.estimators"}}) == [
        "bmdkit.estimators", "bmdkit.persistence", "bmdkit.estimators"]  # one would be found


def _top(module):
    """The node of docs/architecture.md's diagram that ``module`` belongs to (None: bmdkit)."""
    return module.split(".")[1] if "." in module else None


def _drawn():
    """``{(from, to): arrow}``: the import arrows of docs/architecture.md's diagram."""
    arrows = {}
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for match in re.finditer(r"^\s*(\w+) (-->|-\.->) ([\w &]+)$", text, re.MULTILINE):
        for target in match.group(3).split("&"):
            arrows[match.group(1), target.strip()] = match.group(2)
    return arrows


def test_the_architecture_diagram_draws_the_imports_as_they_are():
    # "-->": imported when the module loads; "-.->": only inside functions. The deprecated
    # bmdkit.validation alias is not drawn.
    real = {}
    for graph, arrow in ((EVERY, "-.->"), (AT_LOAD, "-->")):  # at load wins
        for module, targets in graph.items():
            for target in targets:
                ends = (_top(module), _top(target))
                if None not in ends and ends[0] != ends[1] and "validation" not in ends:
                    real[ends] = arrow
    drawn = _drawn()
    assert len(drawn) > 40
    assert {k: v for k, v in drawn.items() if real.get(k) != v} == {}, "drawn, not so"
    assert {k: v for k, v in real.items() if drawn.get(k) != v} == {}, "so, not drawn"


def _loaded(code):
    """Names of the bmdkit, torch and timm modules loaded after ``code`` in a fresh interpreter."""
    script = (f"{code}\nimport sys\nprint(' '.join(m for m in sys.modules "
              "if m.split('.')[0] in ('bmdkit', 'torch', 'timm', 'skorch')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["bmdkit.clinical", "bmdkit.defaults", "bmdkit.metrics",
                                    "bmdkit.model_selection", "bmdkit.folds",
                                    "bmdkit.evaluation", "bmdkit.fit_store",
                                    "bmdkit.fingerprints"])
def test_evaluation_layers_load_no_torch(module):
    loaded = _loaded(f"import {module}")
    assert module in loaded and not loaded & {"torch", "timm", "skorch"}


def test_io_loads_no_torch_module_and_nn_loads_no_file_or_report_layer():
    io = sorted(m for m in MODULES if _within(m, "bmdkit.io"))
    loaded = _loaded("\n".join(f"import {m}" for m in io))
    assert set(io) <= loaded and not any(_within(m, "bmdkit.nn") for m in loaded)
    nn = sorted(m for m in MODULES if _within(m, "bmdkit.nn"))
    loaded = _loaded("\n".join(f"import {m}" for m in nn))
    assert set(nn) <= loaded
    assert not [m for m in loaded for layer in FORBIDDEN[1][1] if _within(m, layer)]


#: The most lines a module of bmdkit may have: one concern per module (issue 25).
MAX_LINES = 600


def test_no_module_is_over_600_lines():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
