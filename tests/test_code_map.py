"""The README's code map is the import graph: every package has a floor, no library module imports from a package on
a higher floor (so nothing climbs back up), library code never raises click errors, no two modules import each
other (directly or around a loop), the data commands never reach the CPU overlay, no library module reads
``tests/`` (the data it needs is package data), and neither the library nor a test imports the benchmarks."""

from __future__ import annotations

import ast
import fnmatch
import re
import tomllib

from helpers import REPO
from dataset_builders.nikl import sample_files

README = (REPO / "README.md").read_text(encoding="utf-8")


def floors() -> dict[str, int]:
    """package → its floor in the README's code map (1 = the bottom)."""
    section = README[README.index("## Code map"):]
    return {name: int(floor) for floor, name in re.findall(r"^\| (\d+) \| `(\w+)/` \|", section, flags=re.MULTILINE)}


def project_packages() -> list[str]:
    """The top-level packages (a folder of data inside one, like dataset_builders.samples, is part of it)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return [name for name in config["tool"]["setuptools"]["packages"] if "." not in name]


def module_imports(path) -> list[tuple[str, int]]:
    """Every absolute import in a file (module name, line), including those inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, node.lineno)]
            found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def modules() -> dict[str, object]:
    out = {}
    for package in project_packages():
        for path in sorted((REPO / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            out[name] = path
    return out


def test_every_package_has_a_floor_and_every_floor_a_package():
    assert set(floors()) == set(project_packages())
    assert sorted(floors().values()) == list(range(1, len(floors()) + 1)), "floors are numbered 1, 2, 3 … once each"


def test_no_module_imports_from_a_higher_floor():
    floor = floors()
    problems = []
    for name, path in modules().items():
        package = name.split(".")[0]
        for imported, line in module_imports(path):
            target = imported.split(".")[0]
            if target in floor and floor[target] > floor[package]:
                problems.append(f"{path.relative_to(REPO)}:{line} imports {imported}: {target}/ is on floor "
                                f"{floor[target]}, above {package}/ (floor {floor[package]})")
    assert not problems, "\n".join(problems)


def test_library_code_never_touches_the_click_layer_or_raises_click_errors():
    for name, path in modules().items():
        if name.startswith("tools"):
            continue
        text = path.read_text(encoding="utf-8")
        assert "ClickException" not in text and "UsageError" not in text, f"{path}: library code raises click errors"
        assert not any(imported.split(".")[0] == "tools" for imported, _ in module_imports(path)), path


def import_graph() -> dict[str, set[str]]:
    """module → the project modules it imports (inside functions too)."""
    graph = {name: set() for name in modules()}
    for name, path in modules().items():
        for imported, _ in module_imports(path):
            if imported in graph and imported != name:
                graph[name].add(imported)
    return graph


def reachable(start: str, graph: dict[str, set[str]]) -> set[str]:
    """Every module ``start`` may import, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_data_commands_never_import_the_cpu_overlay():
    """Recipes are read in the data layer: building rows needs nothing of the CPU smoke-run module."""
    graph = import_graph()
    assert "training.cpu_overlay" in reachable("tools.cpu_overlay", graph)  # the walk finds it where it is used
    for command in ("tools.build_sft_data", "tools.build_dpo_data"):
        assert "training.cpu_overlay" not in reachable(command, graph), command


def test_the_packages_above_generation_generate_through_the_one_entry():
    """Checkpoint selection (and anything else above generation/ but the commands) generates through
    generation.pipeline — one checkpoint resolution, one lock, one batch decision — not through its parts."""
    reached = {f"{path.relative_to(REPO)}:{line} imports {name}" for module, path in modules().items()
               if module.split(".")[0] in ("training", "demo") for name, line in module_imports(path)
               if name.startswith("generation") and not name.startswith("generation.pipeline")}
    assert not reached, "\n".join(sorted(reached))
    assert any(name.startswith("generation.pipeline") for name, _ in module_imports(modules()["training.selection"]))


def test_no_import_loops():
    graph = import_graph()
    loops = []

    def visit(node: str, stack: list[str]) -> None:
        for nxt in graph[node]:
            if nxt in stack:
                loops.append(" → ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in done:
                visit(nxt, stack + [nxt])
        done.add(node)

    done: set[str] = set()
    for start in graph:
        if start not in done:
            visit(start, [start])
    assert not loops, "import loops:\n" + "\n".join(sorted(set(loops)))


def test_one_place_turns_user_errors_into_click_errors():
    sites = [path for name, path in modules().items() if "except UserError" in path.read_text(encoding="utf-8")]
    assert [path.relative_to(REPO).as_posix() for path in sites] == ["tools/cli.py"]


def benchmark_imports(path) -> list[tuple[str, int]]:
    """The imports of ``path`` that reach into benchmarks/: the package, or one of its scripts by its own name (with
    benchmarks/ on sys.path)."""
    scripts = {script.stem for script in (REPO / "benchmarks").glob("*.py")} - set(project_packages())
    return [(name, line) for name, line in module_imports(path) if name.split(".")[0] in {"benchmarks", *scripts}]


def test_neither_the_library_nor_a_test_imports_the_benchmarks():
    """A benchmark is run as a user runs it (tests start its script); what a user needs too lives in the library."""
    files = [*modules().values(), *sorted((REPO / "tests").rglob("*.py"))]
    problems = [f"{path.relative_to(REPO)}:{line} imports {name}" for path in files
                for name, line in benchmark_imports(path)]
    assert not problems, "\n".join(problems)


def test_a_benchmark_import_is_found_wherever_it_is(tmp_path):
    source = tmp_path / "test_example.py"
    source.write_text("import json\nfrom common.io import write_text\n\n\ndef test_x():\n"
                      "    from benchmarks.gpu_bench import main\n    import run_all\n    import common.checkout\n",
                      encoding="utf-8")
    assert benchmark_imports(source) == [("benchmarks.gpu_bench", 6), ("benchmarks.gpu_bench.main", 6), ("run_all", 7)]


def paths_into_tests(path) -> list[tuple[str, int]]:
    """The string literals of ``path`` (docstrings aside) that name the test folder: ``"tests"`` as a path part, or
    a path starting ``tests/``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.value, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and re.match(r"(\./)?tests([/\\]|$)", node.value)]


def test_no_library_module_reads_the_tests():
    """What the library needs (the sample dialogues) it ships itself; tests/ is not part of an installed package."""
    problems = [f"{path.relative_to(REPO)}:{line} names {value!r}" for path in modules().values()
                for value, line in paths_into_tests(path)]
    assert not problems, "\n".join(problems)


def test_a_path_into_the_tests_is_found_in_any_spelling(tmp_path):
    source = tmp_path / "module.py"
    source.write_text('"""Reads tests/fixtures, says the docstring (that is no read)."""\nfrom pathlib import Path\n'
                      'REPO = Path(__file__).parent\nDATA = REPO / "tests" / "fixtures"\n\n\ndef f():\n'
                      '    """tests/ again."""\n    return Path("tests/fixtures/x.json"), "contests", "tests_of_x"\n',
                      encoding="utf-8")
    assert paths_into_tests(source) == [("tests", 4), ("tests/fixtures/x.json", 9)]


def test_the_sample_files_are_package_data():
    """An installed wheel holds the sample dialogues: pyproject.toml declares every one as package data."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    for path in sample_files():
        folder = path.parent.relative_to(REPO).as_posix().replace("/", ".")
        assert folder in setuptools["packages"], folder
        assert any(fnmatch.fnmatch(path.name, pattern) for pattern in setuptools["package-data"][folder]), path
