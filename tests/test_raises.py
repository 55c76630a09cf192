"""Every raise in hubembed is a hubembed error: the paths that raised bare ValueError/KeyError raise
hubembed errors with a clear message, and a guard finds no other raise of a builtin exception class."""

import ast
import builtins
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import pytest

from hubembed import testing
from hubembed._formats import convert, forward, names, writers
from hubembed._tokenizer import check_flavour
from hubembed.errors import ConversionError, HubEmbedError, InputError

PACKAGE = os.path.join(os.path.dirname(__file__), "..", "hubembed")


# -- the paths that raised builtin errors -------------------------------------------------------------------------
def _tiny_weights(**kwargs: Any) -> Tuple[names.BertConfig, Dict[str, np.ndarray]]:
    cfg = testing.tiny_config(vocab_size=40, num_layers=1)
    return cfg, names.random_weights(cfg, **kwargs)


def _save(tmp_path: Path, weights: Dict[str, np.ndarray], cfg: names.BertConfig, style: str = "dict") -> str:
    vocab = writers.write_tiny_vocab(str(tmp_path / "vocab.txt"))
    return writers.save_encoder(
        weights, cfg, str(tmp_path / "encoder"), vocab_file=vocab, do_lower_case=True, style=style
    )


def test_save_encoder_unknown_style(tmp_path: Path) -> None:
    cfg, weights = _tiny_weights()
    with pytest.raises(InputError, match=r"style 'tf3'; valid: dict, dict_no_layers, list, tf1"):
        _save(tmp_path, weights, cfg, style="tf3")


def test_save_encoder_style_that_needs_a_pooler(tmp_path: Path) -> None:
    cfg, weights = _tiny_weights()
    del weights["pooler_transform/kernel"], weights["pooler_transform/bias"]
    with pytest.raises(InputError, match=r"style 'list' needs pooler weights"):
        _save(tmp_path, weights, cfg, style="list")


def test_save_encoder_missing_weight(tmp_path: Path) -> None:
    cfg, weights = _tiny_weights()
    del weights["transformer/layer_0/intermediate/bias"]
    with pytest.raises(InputError, match=r"weight transformer/layer_0/intermediate/bias is missing"):
        _save(tmp_path, weights, cfg)


def test_save_encoder_weight_of_another_shape(tmp_path: Path) -> None:
    cfg, weights = _tiny_weights()
    weights["word_embeddings/embeddings"] = weights["word_embeddings/embeddings"][:30]
    with pytest.raises(
        InputError, match=r"weight word_embeddings/embeddings has shape \(30, 16\), expected \(40, 16\)"
    ):
        _save(tmp_path, weights, cfg)
    assert not (tmp_path / "encoder").exists()


def test_unknown_activation() -> None:
    with pytest.raises(InputError, match=r"activation 'swish'; valid: gelu, gelu_tanh, relu"):
        forward._activation("swish")


def test_unknown_tokenizer_flavour() -> None:
    with pytest.raises(InputError, match=r"tokenizer flavour 'spacy'; valid: tensorflow_text, huggingface"):
        check_flavour("spacy")


def test_unknown_testing_kind(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"kind 'tf3_dict'; valid: tf2_dict, .*garden_albert"):
        testing.build("tf3_dict", str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_input_errors_stay_value_errors() -> None:
    """Callers that caught the ValueError still catch it."""
    with pytest.raises(ValueError):
        check_flavour("spacy")


def test_layer_norm_under_neither_name() -> None:
    with pytest.raises(
        ConversionError,
        match=r"lacks the BERT weight 'embeddings.LayerNorm.weight' \(or 'embeddings.LayerNorm.gamma'\)",
    ):
        convert._ln({"embeddings.LayerNorm.beta": np.zeros(4)}, "embeddings.LayerNorm")


def _hf_checkpoint(d: str, vocab_size: int = 40, rows: int = 40, drop: Iterable[str] = ()) -> str:
    """A tiny Hugging Face BERT folder written with numpy (config.json, model.safetensors, vocab.txt)."""
    from safetensors.numpy import save_file

    H, F, L = 8, 16, 1
    rng = np.random.default_rng(0)
    shapes = {
        "embeddings.word_embeddings.weight": (rows, H),
        "embeddings.position_embeddings.weight": (16, H),
        "embeddings.token_type_embeddings.weight": (2, H),
        "embeddings.LayerNorm.weight": (H,),
        "embeddings.LayerNorm.bias": (H,),
    }
    for i in range(L):
        s = f"encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes.update({s + n + ".weight": (H, H), s + n + ".bias": (H,)})
        shapes.update({s + "intermediate.dense.weight": (F, H), s + "intermediate.dense.bias": (F,)})
        shapes.update({s + "output.dense.weight": (H, F), s + "output.dense.bias": (H,)})
        for n in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes.update({s + n + ".weight": (H,), s + n + ".bias": (H,)})
    tensors = {k: rng.normal(size=v).astype(np.float32) for k, v in shapes.items() if k not in drop}
    os.makedirs(d)
    save_file(tensors, os.path.join(d, "model.safetensors"))
    writers.write_tiny_vocab(os.path.join(d, "vocab.txt"))
    config = dict(model_type="bert", hidden_size=H, num_hidden_layers=L, num_attention_heads=2)
    config.update(intermediate_size=F, vocab_size=vocab_size, max_position_embeddings=16)
    with open(os.path.join(d, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    return d


def test_convert_checkpoint_without_a_layer_norm(tmp_path: Path) -> None:
    src = _hf_checkpoint(str(tmp_path / "hf"), drop=("embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"))
    with pytest.raises(ConversionError, match=r"model.safetensors: the checkpoint lacks the BERT weight 'embeddings"):
        convert.convert(src, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_convert_checkpoint_whose_weights_do_not_fit_its_config(tmp_path: Path) -> None:
    src = _hf_checkpoint(str(tmp_path / "hf"), vocab_size=40, rows=38)
    with pytest.raises(
        ConversionError,
        match=r"model.safetensors does not fit .*config.json: weight word_embeddings/embeddings has shape \(38, 8\)",
    ):
        convert.convert(src, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert [n for n in os.listdir(tmp_path) if n.startswith(".converting-")] == []


# -- the guard ----------------------------------------------------------------------------------------------------
# (path, enclosing function, builtin class) raised on purpose where Python's protocols require that class:
# __getattr__ must raise AttributeError (hasattr, getattr with a default), __getitem__ IndexError.
PROTOCOL = {
    ("hubembed/_pipeline/graph.py", "ExportedEmbedder.__getattr__", "AttributeError"),
    ("hubembed/keras/__init__.py", "__getattr__", "AttributeError"),
    ("hubembed/__init__.py", "__getattr__", "AttributeError"),  # the package's lazy public submodules
    ("hubembed/keras/flavours.py", "attribute", "AttributeError"),  # the body of keras3/legacy's __getattr__
    ("hubembed/encoder.py", "__getattr__", "AttributeError"),
    ("hubembed/_corpus/store.py", "Extraction.__getitem__", "IndexError"),
}
# Extraction.by_id raises KeyError for an id no row has, as a mapping does (tests/corpus/test_extract.py); an id that
# names several rows is an OutputError (tests/test_new_user_two.py).
TODO_NOT_OWNED = {
    ("hubembed/_corpus/store.py", "Extraction.by_id", "KeyError"),
}


def _builtin_exception(exc: ast.expr) -> Optional[str]:
    """The name of the builtin exception class ``raise exc`` raises, else None (a hubembed error, a variable)."""
    target = exc.func if isinstance(exc, ast.Call) else exc
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "builtins":
        name = target.attr
    elif isinstance(target, ast.Name):
        name = target.id
    else:
        return None
    cls = getattr(builtins, name, None)
    return name if isinstance(cls, type) and issubclass(cls, BaseException) else None


class _Raises(ast.NodeVisitor):
    """(enclosing function's qualified name, builtin class) of every raise of a builtin exception class.

    A bare ``raise`` (a re-raise) and ``raise err`` / ``raise err from e`` of a caught exception name no class.
    """

    def __init__(self) -> None:
        self.scope: List[str] = []
        self.found: List[Tuple[str, str, int]] = []

    def _scoped(self, node: Union[ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef]) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _scoped

    def visit_Raise(self, node: ast.Raise) -> None:
        name = _builtin_exception(node.exc) if node.exc is not None else None
        if name is not None:
            self.found.append((".".join(self.scope) or "<module>", name, node.lineno))
        self.generic_visit(node)


def builtin_raises() -> List[Tuple[str, str, str, int]]:
    """(path relative to the repository, enclosing function, builtin class, line) over the package but errors.py."""
    root = os.path.normpath(os.path.join(PACKAGE, ".."))
    out = []
    for dirpath, _, files in os.walk(PACKAGE):
        for f in sorted(files):
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if not f.endswith(".py") or rel == "hubembed/errors.py":
                continue
            with open(path, encoding="utf-8") as fh:
                visitor = _Raises()
                visitor.visit(ast.parse(fh.read(), rel))
            out += [(rel, fn, name, line) for fn, name, line in visitor.found]
    return out


def test_the_guard_sees_builtin_raises() -> None:
    visitor = _Raises()
    visitor.visit(
        ast.parse(
            "class A:\n"
            "    def f(self):\n"
            "        raise ValueError('x')\n"
            "def g():\n"
            "    try:\n        pass\n    except KeyError as e:\n        raise e from None\n"
            "    raise builtins.KeyError\n"
            "def h():\n    raise InputError('x') from None\n"
            "def i():\n    try:\n        pass\n    except OSError:\n        raise\n"
            "def j():\n    raise TypeError('x') from None\n"
        )
    )
    assert [(fn, name) for fn, name, _ in visitor.found] == [
        ("A.f", "ValueError"),
        ("g", "KeyError"),
        ("j", "TypeError"),
    ]


def test_no_raise_of_a_builtin_exception_class() -> None:
    found = builtin_raises()
    unexpected = [r for r in found if r[:3] not in PROTOCOL | TODO_NOT_OWNED]
    assert not unexpected, "raise a hubembed error (hubembed/errors.py) instead: " + ", ".join(
        f"{rel}:{line} {fn}: {name}" for rel, fn, name, line in unexpected
    )
    # The allow-list holds no stale entries: each still names a raise (which also shows the walk sees the package).
    assert {r[:3] for r in found} >= PROTOCOL | TODO_NOT_OWNED


def test_every_hubembed_error_is_a_hubembed_error() -> None:
    import hubembed.errors as errors

    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, BaseException)]
    assert classes and all(issubclass(c, HubEmbedError) for c in classes)
