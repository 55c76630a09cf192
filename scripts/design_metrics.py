"""Design figures of the package, for the before/after tables of design notes.

    python scripts/design_metrics.py [PACKAGE_DIR] [TESTS_DIR]

Prints: lines of the largest modules, classes over 300 lines, functions over 80, imports inside functions
(all / hubembed's own / reaching the package root), annotated parameters (self/cls excluded), signatures
carrying the load arguments, test files per folder.
"""

import ast
import collections
import pathlib
import sys

LOAD_ARGS = {"preprocess", "seq_length", "backend", "trust", "quantize"}


def _files(root: pathlib.Path):
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _reaches_root(node: ast.AST, submodules: set) -> bool:
    """``import hubembed`` or ``from hubembed import name`` where the name is not a submodule (the package root)."""
    if isinstance(node, ast.Import):
        return any(a.name == "hubembed" for a in node.names)
    return (
        isinstance(node, ast.ImportFrom)
        and node.module == "hubembed"
        and any(a.name not in submodules for a in node.names)
    )


def main(pkg: str = "hubembed", tests: str = "tests") -> None:
    root = pathlib.Path(pkg)
    submodules = {p.stem if p.suffix else p.name for p in root.iterdir() if p.suffix == ".py" or p.is_dir()}
    sizes, big_classes, long_funcs = [], [], []
    inner = collections.Counter()
    params = annotated = load_sigs = 0
    for path in _files(root):
        text = path.read_text(encoding="utf-8")
        sizes.append((len(text.splitlines()), str(path)))
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 300:
                big_classes.append(f"{path}:{node.name} {node.end_lineno - node.lineno + 1}")
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if node.end_lineno - node.lineno + 1 > 80:
                long_funcs.append(f"{path}:{node.name}")
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            args = [a for a in args if a.arg not in ("self", "cls")]
            params += len(args)
            annotated += sum(a.annotation is not None for a in args)
            if len(LOAD_ARGS & {a.arg for a in args}) >= 4:
                load_sigs += 1
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in sub.names] if isinstance(sub, ast.Import) else [sub.module or ""]
                    inner["all"] += 1
                    if any(n.startswith("hubembed") for n in names):
                        inner["hubembed"] += 1
                    if _reaches_root(sub, submodules):
                        inner["package root"] += 1
    print("largest modules:", ", ".join(f"{p} {n}" for n, p in sorted(sizes, reverse=True)[:6]))
    print("classes over 300 lines:", big_classes or "none")
    print("functions over 80 lines:", long_funcs or "none")
    print("imports inside functions:", dict(inner))
    print(f"annotated parameters: {annotated}/{params} ({100 * annotated / max(params, 1):.0f}%)")
    print("signatures with >= 4 of the load arguments:", load_sigs)
    per = collections.Counter(str(p.parent) for p in pathlib.Path(tests).rglob("test_*.py"))
    print("test files per folder:", dict(sorted(per.items())))


if __name__ == "__main__":
    main(*sys.argv[1:])
