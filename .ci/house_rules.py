"""House rules no general linter knows, checked over the project's source (run by `make lint`
after ruff; ruff's own configuration is in pyproject.toml):

- every script (r??_*.py, run_all.py) has a docstring saying what it Reads, Writes and Cost;
- no script imports another script (shared code lives in a0N_*.py);
- no array is loaded with allow_pickle=True, and every pickle.Unpickler subclass overrides
  find_class (a restricted unpickler); plain pickle/joblib/torch loading is banned by ruff.

Prints one line per breach (file:line: rule) and exits 1 if there is any.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def scripts() -> list[Path]:
    return sorted(PROJECT_ROOT.glob("r[0-9][0-9]_*.py")) + [PROJECT_ROOT / "run_all.py"]


def sources() -> list[Path]:
    return sorted(PROJECT_ROOT.glob("*.py")) + sorted((PROJECT_ROOT / "bench").glob("*.py"))


def docstring_breaches(path: Path, tree: ast.Module) -> list[str]:
    docstring = ast.get_docstring(tree) or ""
    if not docstring:
        return [f"{path.name}:1: a script starts with a docstring"]
    return [f"{path.name}:1: the docstring does not say what the script {word.lower()}"
            for word in ("Reads", "Writes", "Cost") if word not in docstring]


def import_breaches(path: Path, tree: ast.Module, script_names: set[str]) -> list[str]:
    breaches = []
    for node in ast.walk(tree):
        names = [node.module] if isinstance(node, ast.ImportFrom) else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            if name and name.split(".")[0] in script_names:
                breaches.append(f"{path.name}:{node.lineno}: imports the script {name} "
                                f"(shared code belongs in an a0N_*.py module)")
    return breaches


def pickle_breaches(path: Path, tree: ast.Module) -> list[str]:
    breaches = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "allow_pickle" and \
                not (isinstance(node.value, ast.Constant) and node.value.value is False):
            breaches.append(f"{path.name}:{node.value.lineno}: allow_pickle must stay False "
                            f"(inputs are untrusted)")
        if isinstance(node, ast.ClassDef) and any(
                ast.unparse(base) in ("pickle.Unpickler", "Unpickler") for base in node.bases):
            methods = {item.name for item in node.body if isinstance(item, ast.FunctionDef)}
            if "find_class" not in methods:
                breaches.append(f"{path.name}:{node.lineno}: an Unpickler subclass must "
                                f"restrict find_class")
    return breaches


def main() -> int:
    script_names = {path.stem for path in scripts()}
    breaches = []
    for path in sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if path.stem in script_names:
            breaches += docstring_breaches(path, tree)
            breaches += import_breaches(path, tree, script_names)
        breaches += pickle_breaches(path, tree)
    for breach in breaches:
        print(breach)
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main())
