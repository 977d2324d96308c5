"""The package's shape: its import graph has no cycle and crosses no wall, and every config field is read by some code.

Both read the package's source with `ast` (imports at module level and inside functions alike); nothing is imported
or run. The walls are written here, not read from a design file, so the test runs on a clean checkout alone.
"""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "sad_kaggle"
MODULES = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in ("__init__", "_modidx"))

# (module, modules it must not import, directly or through function-level imports, and why)
WALLS = [
    ("config", set(MODULES) - {"config"}, "config imports nothing of the package"),
    ("align", set(MODULES) - {"config", "inputs"}, "align knows tokenizers and numpy, never models or training code"),
    ("losses", set(MODULES) - {"config", "teacher"}, "losses know tensors, never the trainer, files, or the teacher source"),
    ("run", {"trainer", "cache_writer", "cli", "widgets", "plots"}, "run sits below the trainer and the cache writer"),
    ("cache", {"run", "trainer", "cache_writer", "cli"}, "the cache reader is a teacher source below run"),
    ("cache_writer", {"trainer", "cli"}, "the cache writer and the trainer never import each other"),
    ("trainer", {"cache", "cache_writer", "widgets", "plots", "cli"},
     "the trainer never asks which teacher source it has, and never imports the plots or widgets"),
]
# only `cli` knows exit codes, and nothing imports it
WALLS += [(m, {"cli"}, "nothing imports cli") for m in MODULES if m != "cli"]


def imports_of(module: str) -> set:
    "Package modules `module` imports, at module level or inside functions."
    tree = ast.parse((PKG / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module: out.add(node.module.split(".")[0])
            elif node.level == 1: out |= {a.name for a in node.names}
            elif node.module and node.module.startswith("sad_kaggle."): out.add(node.module.split(".")[1])
            elif node.module == "sad_kaggle": out |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("sad_kaggle.")}
    return out & set(MODULES)


GRAPH = {m: imports_of(m) for m in MODULES}


def cycles(graph: dict) -> list:
    "Every import cycle, as a list of modules (depth-first search)."
    found, state = [], {}
    def visit(m, path):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open": found.append(path[path.index(d):] + [d])
            elif d not in state: visit(d, path + [d])
        state[m] = "done"
    for m in sorted(graph):
        if m not in state: visit(m, [m])
    return found


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert cycles(GRAPH) == [], GRAPH


@pytest.mark.parametrize("module,forbidden,why", WALLS, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(WALLS)])
def test_no_import_across_a_wall(module, forbidden, why):
    if module not in GRAPH: pytest.skip(f"no module {module}")
    crossed = GRAPH[module] & forbidden
    assert not crossed, f"{module} imports {sorted(crossed)}: {why}"


def test_only_inputs_knows_kaggle_paths():
    "`/kaggle/...` literals only in inputs (plus the Kaggle preset's output directory in config and cli's help text)."
    allowed = {"inputs", "config", "cli"}
    for m in MODULES:
        if m in allowed: continue
        consts = [n.value for n in ast.walk(ast.parse((PKG / f"{m}.py").read_text()))
                  if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        assert not [c for c in consts if "/kaggle/" in c], f"{m} names a /kaggle path"


def read_fields() -> tuple[set, set]:
    "(names read as attributes or by `getattr` with a constant, prefixes read by `getattr(x, f'prefix_{...}')`)."
    attrs, prefixes = set(), set()
    for m in MODULES:
        tree = ast.parse((PKG / f"{m}.py").read_text())
        if m == "config":      # the field definitions themselves are not uses
            tree.body = [n for n in tree.body if not (isinstance(n, ast.ClassDef) and n.name == "DistillConfig")]
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load): attrs.add(n.attr)
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "getattr" and len(n.args) >= 2:
                a = n.args[1]
                if isinstance(a, ast.Constant) and isinstance(a.value, str): attrs.add(a.value)
                elif isinstance(a, ast.JoinedStr) and a.values and isinstance(a.values[0], ast.Constant):
                    prefixes.add(a.values[0].value)
    return attrs, prefixes


def unread(names, components) -> list:
    attrs, prefixes = read_fields()
    return [n for n in names if n not in attrs
            and not any(n.startswith(p) and n[len(p):] in components for p in prefixes)]


def test_every_config_field_is_read():
    "A setting no code reads is a setting that lies (issue 2): each field is read somewhere outside its definition."
    from sad_kaggle.config import COMPONENTS, FIELDS
    assert unread(["no_such_setting", "alpha_nothing"], COMPONENTS) == ["no_such_setting", "alpha_nothing"]
    assert unread(FIELDS, COMPONENTS) == []


def test_trainer_computes_no_loss_and_losses_touch_no_files():
    "The trainer combines what the objectives return; the objectives read tensors, never files or the environment."
    trainer = (PKG / "trainer.py").read_text()
    assert not [w for w in ("cross_entropy", "kl_div", "log_softmax", "mse_loss") if w in trainer]
    losses = ast.parse((PKG / "losses.py").read_text())
    mods = {a.name for n in ast.walk(losses) if isinstance(n, ast.Import) for a in n.names} | \
           {n.module for n in ast.walk(losses) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert not mods & {"os", "pathlib", "json", "shutil", "safetensors"}, mods
