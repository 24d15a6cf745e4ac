"""The shape of the code, checked: layering, no import cycles, no family named in shared code, a light runtime.

- `zoo` (fluxion, foundationals, `zoo.load`, LoRAs at run time) never imports `converters`; the CLI
  (`zoo/cli/`) is the one place that joins them.
- No import cycle between modules, counting function-local imports (so none can hide a cycle) and the
  package `__init__` an import runs; imports under `if TYPE_CHECKING:` do not run and do not count.
- Nothing outside a family's folder names that family or one of its conversions in a string.
- `import zoo; zoo.load(...)` works without diffusers, transformers, huggingface_hub and click.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from converters import registry
from converters._convert.by_name import ConvertRun

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "converters")
# Shared builders used by several families: they may name those families' parts, not the families.
SHARED_FAMILY_CODE = ("converters/stable_diffusion/",)
TinyConversions = Callable[..., ConvertRun]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _targets(module: str, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> set[str]:
    """Our modules an import statement runs: the named ones, and their packages outside `module`'s."""
    if isinstance(node, ast.Import):
        named = {alias.name for alias in node.names}
    else:
        base = node.module or ""
        if node.level:  # relative: from the module's package, one level up per extra dot
            package = module.split(".") if known[module].name == "__init__.py" else module.split(".")[:-1]
            base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
        named = {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    targets: set[str] = set()
    for name in named:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            ancestor = ".".join(parts[:end])
            if ancestor in known and not (module == ancestor or module.startswith(ancestor + ".")):
                targets.add(ancestor)
    return targets


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        graph[module] = set().union(*(_targets(module, node, known) for node in _imports(tree)))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_there_is_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_zoo_never_imports_converters_outside_the_cli() -> None:
    offending = {
        module: sorted(t for t in targets if t.startswith("converters"))
        for module, targets in import_graph().items()
        if module.startswith("zoo") and not module.startswith("zoo.cli")
    }
    assert {module: found for module, found in offending.items() if found} == {}


def _family_strings(family: str) -> Callable[[str], bool]:
    return lambda text: text == family or text.startswith(f"{family}.")


def _string_literals(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.lineno, node.value


def test_no_family_is_named_outside_its_folder() -> None:
    """String literals only: docstrings and help texts may show examples."""
    families = [name for name, family in registry.families().items() if family.declared]
    assert families, "no family declares conversions"
    found: list[str] = []
    for path in sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(SHARED_FAMILY_CODE) or relative.startswith("zoo/cli/"):
            continue
        for family in families:
            if relative.startswith(f"converters/{family}/"):
                continue
            names_it = _family_strings(family)
            found += [
                f"{relative}:{line}: {text!r}" for line, text in _string_literals(path) if names_it(text)
            ]
    assert found == []


def test_family_folders_are_named_like_their_family() -> None:
    for name, family in registry.families().items():
        module = sys.modules[f"converters.{name}"]
        assert getattr(module, "FAMILY", None) is family, f"converters/{name}/ does not declare FAMILY"


def test_the_registry_imports_no_upstream_library() -> None:
    code = (
        "import sys; from converters import registry; registry.families(); registry.all_conversions();"
        "heavy = [m for m in ('diffusers', 'transformers', 'huggingface_hub') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.fixture
def blocked_upstream() -> str:
    """Python code that makes the convert extra's libraries unimportable."""
    blocked = ("diffusers", "transformers", "huggingface_hub", "click", "tqdm", "converters")
    return "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)


def test_the_runtime_loads_a_converted_model_without_the_convert_extra(
    tiny_converted: TinyConversions, blocked_upstream: str
) -> None:
    folder = tiny_converted(next(iter(registry.all_conversions()))).results[0].folder
    code = blocked_upstream + (
        f"import zoo, zoo.fluxion, zoo.lora\nmodel = zoo.load({str(folder)!r})\n"
        "assert type(model).__module__.startswith('zoo.foundationals.')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_command_line_without_the_convert_extra_says_what_to_install(blocked_upstream: str) -> None:
    code = blocked_upstream + "sys.argv = ['zoo', '--help']\nfrom zoo.__main__ import run\nrun()\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1 and "pip install 'zoo[convert]'" in done.stderr
    assert "Traceback" not in done.stderr
