"""The layout says where code runs: the root's modules are what the image runs, deploy/ only runs on the
operator's machine. No module the image runs imports the deploy side or the tests, the image's build copies no
deploy-side file, and the project's modules import each other without a circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers.processes import REPO_DIR

IMAGE_MODULES = sorted(REPO_DIR.glob("*.py"))
DEPLOY_MODULES = sorted((REPO_DIR / "deploy").glob("*.py"))
# Imported from the tests and the deploy side only: what the image must never need.
NOT_IN_THE_IMAGE = {"deploy", "helpers", "tests"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (functions too), as its dotted name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_module(name: str) -> str | None:
    """The project's module a dotted import name refers to (`config`, `deploy.plan`), or None for a library."""
    if (REPO_DIR / f"{name}.py").is_file():
        return name
    package, _, module = name.partition(".")
    if package == "deploy" and (REPO_DIR / "deploy" / f"{module or '__init__'}.py").is_file():
        return f"deploy.{module}" if module else "deploy"
    return None


def module_name(path: Path) -> str:
    return path.stem if path.parent == REPO_DIR else f"deploy.{path.stem}".removesuffix(".__init__")


def test_no_module_the_image_runs_imports_the_deploy_side_or_the_tests() -> None:
    assert {"worker.py", "client.py", "codec_server.py", "config.py", "workflows.py"} <= {p.name for p in IMAGE_MODULES}
    for path in IMAGE_MODULES:
        roots = {name.partition(".")[0] for name in imported_modules(path)}
        assert not roots & NOT_IN_THE_IMAGE, f"{path.name} imports {sorted(roots & NOT_IN_THE_IMAGE)}"


def test_the_image_copies_the_roots_modules_and_no_deploy_side_file() -> None:
    dockerfile = (REPO_DIR / "Dockerfile").read_text()
    copied = [
        source
        for line in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE)
        for source in line.split()[:-1]
        if not source.startswith("--")
    ]
    matched = {path for pattern in copied for path in REPO_DIR.glob(pattern)}
    assert {path for path in matched if path.suffix == ".py"} == set(IMAGE_MODULES)
    context = [line for line in (REPO_DIR / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert context[0] == "*", "the build context is an allow-list"
    allowed = [line[1:] for line in context if line.startswith("!")]
    for path in DEPLOY_MODULES:
        relative = path.relative_to(REPO_DIR).as_posix()
        assert not [pattern for pattern in allowed if docker_pattern_matches(pattern, relative)], relative


def docker_pattern_matches(pattern: str, path: str) -> bool:
    """A .dockerignore pattern against a path from the context's root: `*` and `?` never cross a '/'."""
    regex = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in pattern.lstrip("/"))
    return re.fullmatch(regex, path) is not None


def test_the_projects_modules_import_each_other_without_a_circle() -> None:
    graph = {
        module_name(path): {
            target
            for name in imported_modules(path)
            if (target := project_module(name)) and target != module_name(path)
        }
        for path in IMAGE_MODULES + DEPLOY_MODULES
    }
    assert graph["deploy.manifests"] >= {"deploy.alerts", "deploy.yaml_text"}, "the graph sees the deploy side"
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        assert module not in visiting, "import circle: " + " -> ".join([*visiting[visiting.index(module) :], module])
        if module in done:
            return
        visiting.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
