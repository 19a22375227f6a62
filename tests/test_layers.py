"""The package reads top-down: each layer imports only its own layer and the ones below it, and no
module imports itself back through a chain of others. Imports inside functions count too (a lazy
import hides a cycle, it does not remove it)."""
import ast
import pathlib

import pytest

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
# bottom to top; the stage scripts at the repository root sit above them all
LAYERS = ["utils", "data", "algorithms", "models", "methods", "stages"]


def module_name(path):
    parts = list(path.relative_to(REPOSITORY).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_imports(path):
    """The `wsss` modules that `path` imports, anywhere in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == "wsss"}


def package_modules():
    return {module_name(path): path for path in (REPOSITORY / "wsss").rglob("*.py")}


def import_graph():
    modules = package_modules()
    return {name: sorted(imported for imported in project_imports(path) if imported in modules and imported != name)
            for name, path in modules.items()}


def layer_of(module):
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(graph):
    return [(module, imported) for module, imports in graph.items() for imported in imports
            if layer_of(module) is not None and layer_of(imported) is not None
            and layer_of(imported) > layer_of(module)]


def find_cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(module, stack):
        state[module] = "open"
        stack.append(module)
        for imported in graph.get(module, ()):
            if state.get(imported) == "open":
                return stack[stack.index(imported):] + [imported]
            if imported not in state:
                cycle = visit(imported, stack)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [])
            if cycle:
                return cycle
    return None


def test_every_package_is_a_known_layer():
    packages = {path.name for path in (REPOSITORY / "wsss").iterdir() if (path / "__init__.py").exists()}
    assert packages == set(LAYERS)


def test_no_upward_import():
    assert upward_imports(import_graph()) == []


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_no_script_imports_another_script():
    scripts = {path.stem for path in REPOSITORY.glob("*.py")}
    for path in REPOSITORY.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & scripts, path.name


@pytest.mark.parametrize("graph, expected", [
    ({"wsss.utils.a": ["wsss.stages.b"], "wsss.stages.b": []}, [("wsss.utils.a", "wsss.stages.b")]),
    ({"wsss.stages.b": ["wsss.utils.a"], "wsss.utils.a": []}, []),
])
def test_upward_import_detection(graph, expected):
    assert upward_imports(graph) == expected


def test_cycle_detection():
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None
