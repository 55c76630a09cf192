"""Guards for the design: small functions, and imports that follow the data flow.

Stages (README, code map): ``_formats`` (model formats) <- ``_hub`` (loading) ; ``_pipeline`` (the per-text
pipeline) ; ``encoder`` (composes them) <- ``_corpus`` (corpus jobs) <- ``beam``, ``cli``; ``keras``,
``analysis`` and ``plots`` use the core. Checked on every import statement, inside functions too.
"""

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "hubembed"
MAX_LINES = 80  # per function (mccabe complexity <= 20 is ruff's C901, in pyproject.toml)

CORE = (
    "_util",
    "_tokenizer",
    "_wordpiece",
    "errors",
    "registry",
    "_formats",
    "_hub",
    "_pipeline",
    "_engines",
    "_export",
    "_load",
    "_tokenlevel",
    "encoder",
    "garden",
)
OUTER = (
    "hubembed._corpus",
    "hubembed.keras",
    "hubembed.beam",
    "hubembed.spark",
    "hubembed.analysis",
    "hubembed.plots",
    "hubembed.cli",
    "hubembed.testing",
)
RULES = {  # stage -> what it must not import, besides OUTER
    "_formats": ("hubembed._hub", "hubembed._pipeline", "hubembed.encoder", "hubembed.garden"),
    "_hub": ("hubembed._pipeline", "hubembed.encoder", "hubembed.garden"),
    "_pipeline": (
        "hubembed._hub",
        "hubembed._formats",
        "hubembed.encoder",
        "hubembed.garden",
        "hubembed._engines",
        "hubembed._load",
        "hubembed._export",
    ),
}


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        yield ".".join(p for p in parts if p != "__init__"), path


def _imports(path):
    """Every module name an import statement of ``path`` names (``from a import b`` gives a and a.b)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _under(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def test_the_design_checks_see_the_package():
    names = dict(_modules())
    assert {"hubembed._pipeline.spec", "hubembed._hub.resolve", "hubembed._corpus.store", "hubembed.keras"} <= set(
        n if "keras" not in n else "hubembed.keras" for n in names
    )
    assert "hubembed._pipeline.spec" in _imports(names["hubembed.encoder"])


@pytest.mark.parametrize("name,path", [(n, p) for n, p in _modules() if any(_under(n, f"hubembed.{c}") for c in CORE)])
def test_core_stages_import_neither_the_corpus_keras_beam_nor_analysis_layers(name, path):
    stage = name.split(".")[1]
    forbidden = OUTER + RULES.get(stage, ())
    bad = sorted(i for i in _imports(path) for f in forbidden if _under(i, f))
    assert not bad, f"{name} imports {bad}"


def test_no_function_is_over_80_lines():
    long = []
    for name, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, long
