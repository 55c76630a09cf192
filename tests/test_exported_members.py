"""Guards of the public surface: every public name is exported, and importing hubembed stays light."""

import inspect
import subprocess
import sys

import hubembed
from hubembed import errors


def test_all_names_resolve_and_every_error_class_is_exported():
    for name in hubembed.__all__:
        assert hasattr(hubembed, name), name
    error_classes = {
        n for n, obj in vars(errors).items() if inspect.isclass(obj) and issubclass(obj, errors.HubEmbedError)
    }
    assert error_classes - set(hubembed.__all__) == set()
    assert len(hubembed.__all__) == len(set(hubembed.__all__))
    assert hubembed.__all__ == sorted(hubembed.__all__)


def test_import_hubembed_imports_no_tensorflow():
    """`import hubembed` (and the CLI's parser) must not pay for TensorFlow; it is imported when a model loads."""
    code = (
        "import sys, hubembed, hubembed.cli; hubembed.cli.build_parser(); "
        "print(sorted(m for m in ('tensorflow', 'tensorflow_hub', 'tensorflow_text', 'keras', 'torch') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_every_public_name_of_the_package_is_in_all():
    """What `import hubembed` offers besides its submodules (classes, functions) is listed in __all__."""
    import types

    public = {n for n, obj in vars(hubembed).items() if not n.startswith("_") and not isinstance(obj, types.ModuleType)}
    assert "EmbedSpec" in public and "load" in public
    assert public - set(hubembed.__all__) == set()
