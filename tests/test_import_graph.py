"""The packages form layers, with no cycle and no import side effect: callfork (the composition
root: service wiring, CLI, demo, HTTP API) on top; verbs on esl_app and audio_fork; webhooks on
records; switch_sim on nothing of ours and imported only by callfork's demo and CLI; fsargs (how
free text becomes one FreeSWITCH API argument) is a leaf that esl_app and audio_fork, which may not
import each other, both use. Importing any of them leaves the standard library unpatched: the
`callfork` entry point patches for gevent (callfork/cli.py main), as tests/conftest.py does for
the tests."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("callfork", "esl_app", "verbs", "audio_fork", "webhooks", "records", "switch_sim", "fsargs", "cluster")


def _imports(package: str) -> dict:
    """{imported package: [file:line, ...]} for every import of another of PACKAGES in `package`."""
    found: dict = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.setdefault(top, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_cycle_between_packages():
    graph = {p: set(_imports(p)) for p in PACKAGES}
    state: dict = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", "import cycle: " + " -> ".join(trail + [node])
        state[node] = "open"
        for nxt in sorted(graph[node]):
            visit(nxt, trail + [node])
        state[node] = "done"
    for package in PACKAGES:
        visit(package, [])


def test_the_layers():
    uses = {p: _imports(p) for p in PACKAGES}
    for package in PACKAGES:
        assert "callfork" not in uses[package] or package == "callfork", (package, uses[package].get("callfork"))
    for package in ("esl_app", "verbs", "audio_fork", "webhooks", "records"):
        assert "switch_sim" not in uses[package], (package, uses[package]["switch_sim"])
    assert set(uses["switch_sim"]) == set()
    assert set(uses["fsargs"]) == set()
    assert set(uses["records"]) == set()
    assert set(uses["cluster"]) == set()
    assert set(uses["esl_app"]) <= {"fsargs"}
    assert set(uses["audio_fork"]) <= {"fsargs"}
    assert set(uses["verbs"]) <= {"esl_app", "audio_fork"}
    assert set(uses["webhooks"]) <= {"records"}
    assert {f.split(":")[0] for f in uses["callfork"].get("switch_sim", [])} <= {"callfork/cli.py", "callfork/demo.py"}


def test_importing_the_packages_patches_nothing():
    code = ("import " + ", ".join(p for p in PACKAGES) + ", callfork.service, callfork.http_api\n"
            "from gevent import monkey\n"
            "patched = [m for m in ('socket', 'thread', 'threading', 'time', 'select', 'ssl') "
            "if monkey.is_module_patched(m)]\n"
            "assert not patched, patched\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_single_process_loads_no_cluster_driver():
    """redis-py and pg8000 are loaded by the first Registry / PostgreSQL connection only: importing
    the service (and running without [cluster] / [store]) costs a process neither."""
    import subprocess
    import sys
    code = ("import sys, callfork.service, callfork.cli\n"
            "print(sorted(m for m in ('redis', 'pg8000') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
