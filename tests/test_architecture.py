"""The layers hold: every module imports on its own, the import-linter contract in pyproject.toml is
kept, and no import cycle joins modules or packages (imports inside functions count; TYPE_CHECKING ones
do not). docs/architecture.md draws the layers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import grimp

from conftest import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "botmeter"


# Each child starts from a parent that has loaded these and nothing of botmeter: every module is
# imported in an interpreter where no botmeter module is loaded yet, without paying for DuckDB and
# Arrow 80 times. (Loading them first cannot hide a missing import: names are per module.)
_IMPORT_EACH = r"""
import importlib, json, os, sys, traceback
for name in ("duckdb", "pyarrow", "pyarrow.compute", "click", "rich.console", "genai_prices", "boto3"):
    try:
        importlib.import_module(name)
    except ImportError:
        pass
assert not any(m == "botmeter" or m.startswith("botmeter.") for m in sys.modules), "botmeter loaded early"
failed = {}
for module in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(module)
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc(limit=4).encode()[-2000:])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        why = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed[module] = why or f"exit status {status}"
print(json.dumps(failed))
"""


def botmeter_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__main__":  # runs the command line when imported; `python -m botmeter` is tested
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    modules = botmeter_modules()
    assert len(modules) > 60 and "botmeter.interfaces.cli_aws" in modules
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *modules],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    failed = json.loads(done.stdout.strip().splitlines()[-1])
    assert failed == {}, "\n\n".join(f"{m}:\n{why}" for m, why in failed.items())


def test_the_layer_contract_is_kept():
    done = subprocess.run(
        [sys.executable, "-c", "import sys, importlinter.cli as c; sys.exit(c.lint_imports(no_cache=True))"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Layers point one way KEPT" in done.stdout


def _graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(PACKAGE.parent))
    try:
        return grimp.build_graph("botmeter", exclude_type_checking_imports=True, cache_dir=None)
    finally:
        sys.path.remove(str(PACKAGE.parent))


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one node (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_cycles_are_found_by_the_check():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_modules_or_packages():
    graph = _graph()
    modules = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert _cycles(modules) == []

    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = defaultdict(set)
    for importer, imported in modules.items():
        packages[package(importer)] |= {package(m) for m in imported} - {package(importer)}
    assert _cycles(packages) == []


def test_every_backend_is_one_folder_with_a_store_and_an_engine():
    """Each registered backend names a store and an engine that live in its own folder and
    implement the two protocols; an unknown scheme is refused with the valid ones named."""
    import pytest

    from botmeter.exceptions import ConfigError
    from botmeter.store import BACKENDS, QueryEngine, Store, open_store

    for scheme, backend in BACKENDS.items():
        store_cls, engine_cls = backend.store_class(), backend.engine_class()
        folder = store_cls.__module__.rsplit(".", 1)[0]
        assert folder.startswith("botmeter.backends."), scheme
        if engine_cls is not None:
            assert engine_cls.__module__.rsplit(".", 1)[0] == folder, scheme
            for name in ("session", "run", "error_groups", "explore"):
                assert callable(getattr(engine_cls, name, None)), (scheme, name)
            assert issubclass(engine_cls, QueryEngine)
        for name in ("write", "count", "last_event_at", "release", "before_fork", "after_fork", "close"):
            assert callable(getattr(store_cls, name, None)), (scheme, name)
        assert not hasattr(store_cls, "query_engine"), scheme
    assert Store is not None
    with pytest.raises(ConfigError, match=r"unknown scheme 'nosuch'; valid schemes: .*duckdb"):
        open_store("nosuch://x")


READING_SIDE = """
import sys
from botmeter.analyse import Reader
from botmeter.report.dashboard import write_dashboard
recording = ("botmeter.collect.meter", "botmeter.process.pipeline", "duckdb", "genai_prices")
print(" ".join(m for m in recording if m in sys.modules))
"""


def test_a_program_that_only_reads_does_not_load_the_recording_side():
    # botmeter's package names (Meter, Config...) are loaded when first asked for: reading a store
    # (a notebook, the dashboard over ClickHouse) imports in about 0.1 s instead of 0.4.
    out = subprocess.run(
        [sys.executable, "-c", READING_SIDE],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""
    check = "import botmeter; from botmeter import Meter, Config, open_store; print(botmeter.Meter is Meter)"
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )
    assert out.stdout.strip() == "True", out.stderr[-2000:]
