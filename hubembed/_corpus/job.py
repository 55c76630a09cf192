"""One corpus job: which model, loaded how (``LoadOptions``); how to embed and write (``Settings``); how the input
is read (``InputOptions``); where to, and whether to resume. The three extract front-ends (``hubembed.extract``,
``hubembed.beam.extract``, ``hubembed.spark.extract``) and the CLI build a ``CorpusJob`` with ``CorpusJob.make``
from their keywords, so a new corpus option is added here, once, and checked here, before any model loads.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Union

from hubembed._corpus import shards
from hubembed._load import LoadOptions
from hubembed._pipeline import quantize
from hubembed._pipeline.batching import BATCH_SIZE, MAX_TOKENS
from hubembed._pipeline.spec import EmbedSpec
from hubembed._pipeline.tokens import SUBWORD
from hubembed.errors import InputError

DTYPES = ("float32", "float16")


@dataclass
class Settings:
    """How to embed and write a corpus: everything but the encoder and the input (picklable, for Beam)."""

    level: str = "sentence"
    format: Optional[str] = None
    subword: str = "first"
    spec: EmbedSpec = field(default_factory=EmbedSpec)
    dtype: str = "float32"
    batch_size: int = BATCH_SIZE
    max_tokens: Optional[int] = MAX_TOKENS
    shard_size: Optional[int] = None
    cache: Union[bool, str] = True
    keep_text: bool = False  # sentence rows: store each text with its vector (token and word rows always do)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise InputError(f"dtype={self.dtype!r}; valid: {', '.join(DTYPES)}")
        if not isinstance(self.keep_text, bool):
            raise InputError(f"keep_text={self.keep_text!r}; valid: True or False")
        self.format = self.format or shards.default_format(self.level)
        shards.check(self.level, self.format, self.dtype, self.spec.combine)
        if self.shard_size is None:
            self.shard_size = 10000 if self.level == "sentence" else 1000
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise InputError(f"shard_size={self.shard_size!r}; valid: a positive number of texts")
        if self.level == "words" and self.subword not in SUBWORD:
            raise InputError(f"subword={self.subword!r}; valid: {', '.join(SUBWORD)}")
        self._check_token_level()
        self._check_output()
        if self.spec.transform is not None:
            if self.level != "sentence":
                raise InputError("transform applies to sentence vectors; drop it for level='tokens'/'words'")
            self.spec = self.spec.replace(transform=self.spec.transform_object())  # loaded once, checked early

    def _check_token_level(self) -> None:
        """Token and word vectors are not pooled: a sentence-only option given with them is refused, not ignored."""
        if self.level == "sentence":
            return
        default = EmbedSpec()
        sentence_only = ("pooling", "special_tokens", "normalize", "include_prompt")
        ignored = [k for k in sentence_only if getattr(self.spec, k) != getattr(default, k)]
        if ignored:
            raise InputError(
                f"{', '.join(f'{k}={getattr(self.spec, k)!r}' for k in ignored)}: sentence vectors only; "
                f"{self.level} vectors are not pooled (drop it, or extract sentence vectors)"
            )

    def _check_output(self) -> None:
        """truncate_dim and precision: sentence vectors only; codes are stored as they are (npy or parquet)."""
        spec = self.spec
        if (spec.truncate_dim is not None or spec.precision != "float32") and self.level != "sentence":
            raise InputError("truncate_dim and precision apply to sentence vectors; drop them for tokens/words")
        if spec.precision == "float32":
            return
        if self.dtype != "float32":
            raise InputError(
                f"precision={spec.precision!r} stores {self.stored_dtype} codes; dtype= is for float vectors "
                f"(leave it at float32)"
            )
        if self.format == "tfrecord":
            raise InputError(f"TFRecord float lists cannot hold {spec.precision} codes; use format='npy' or 'parquet'")
        self.spec = self.spec.replace(ranges=spec.ranges_object())  # loaded once, checked early

    @property
    def stored_dtype(self) -> str:
        """The dtype of the vectors on disk: ``dtype``, or the codes' with ``precision``."""
        return self.dtype if self.spec.precision == "float32" else quantize.dtype(self.spec.precision).__name__


@dataclass(frozen=True)
class InputOptions:
    """How the input is read (``hubembed._corpus.inputs.open_input``): the column of a table, the id column, the
    format (default: by extension), and what to do with bad and empty rows."""

    column: Optional[str] = None
    id_column: Optional[str] = None
    input_format: Optional[str] = None
    on_bad: str = "fail"
    on_empty: str = "skip"

    def reader_args(self) -> Dict[str, Any]:
        """As ``open_input``'s keywords."""
        return dict(
            column=self.column,
            id_column=self.id_column,
            fmt=self.input_format,
            on_bad=self.on_bad,
            on_empty=self.on_empty,
        )


_LOAD = {f.name for f in dataclasses.fields(LoadOptions)}
_SETTINGS = {f.name for f in dataclasses.fields(Settings)} - {"spec"}
_INPUT = {f.name for f in dataclasses.fields(InputOptions)}


@dataclass(frozen=True)
class CorpusJob:
    """A whole corpus job but the input path and the runner (see the module's docstring)."""

    out: str
    load: LoadOptions = field(default_factory=LoadOptions)
    settings: Settings = field(default_factory=Settings)
    source: InputOptions = field(default_factory=InputOptions)
    resume: bool = False
    quiet: bool = False

    @classmethod
    def make(
        cls, out: str, *, spec: Optional[EmbedSpec] = None, options: Optional[LoadOptions] = None, **keywords: Any
    ) -> "CorpusJob":
        """The job from keywords: ``LoadOptions``' (model=, preprocess=, seq_length=, backend=, trust=, quantize=;
        or ``options=``), ``Settings``' (level=, format=, subword=, dtype=, batch_size=, max_tokens=,
        shard_size=, cache=, keep_text=), ``InputOptions``' (column=, id_column=, input_format=, on_bad=, on_empty=),
        resume=, quiet=, and the ``EmbedSpec`` (``spec=`` or its fields: layers=, pooling=, ...).

        Raises:
            InputError: any of them out of range (before the folder, the input or the model are touched).
        """
        load = LoadOptions.make(options, **{k: v for k, v in keywords.items() if k in _LOAD})
        spec = EmbedSpec.make(
            spec, **{k: v for k, v in keywords.items() if k not in _LOAD | _SETTINGS | _INPUT | {"resume", "quiet"}}
        )
        settings = Settings(spec=spec, **{k: v for k, v in keywords.items() if k in _SETTINGS})
        load.check_spec(spec)
        source = InputOptions(**{k: v for k, v in keywords.items() if k in _INPUT})
        return cls(out, load, settings, source, bool(keywords.get("resume", False)), bool(keywords.get("quiet", False)))

    def known_header(self, source: dict, input_path: str, loaded: Optional[str] = None) -> dict:
        """The part of the manifest's header known before the model loads (what a resume is checked against
        then): the model as given, the settings, the spec's own fields, a given seq_length and the input
        (``loaded``: the handle of an encoder given already loaded; its own window and mode are checked later)."""
        spec, s = self.settings.spec, self.settings
        known: Dict[str, Any] = {
            "model": loaded or self.load.model,
            "spec": {
                "level": s.level,
                "format": s.format,
                "shard_size": s.shard_size,
                "pooling": spec.pooling,
                "special_tokens": spec.special_tokens,
                "normalize": spec.normalize,
                "long": spec.long,
                "stride": spec.stride,
                "truncate_dim": spec.truncate_dim,
                "precision": spec.precision,
            },
            "input": {**source, "path": os.path.abspath(input_path) if input_path != "-" else "-"},
        }
        if s.level != "sentence":  # token rows record the pieces, not a sentence pooling
            for k in ("pooling", "special_tokens", "normalize", "stride", "truncate_dim", "precision"):
                del known["spec"][k]
        if s.level == "words":
            known["spec"]["subword"] = s.subword
        if s.level == "sentence":  # recorded when True (token and word rows always hold their text)
            known["keep_text"] = s.keep_text
        if loaded is not None:
            return known
        known["spec"]["quantize"] = self.load.quantize  # recorded only when used: None when not
        if self.load.seq_length is not None:
            known["spec"]["seq_length"] = self.load.seq_length
        return known

    @classmethod
    def from_arguments(cls, arguments: Dict[str, Any], *, skip: Sequence[str] = (), **overrides: Any) -> "CorpusJob":
        """The job from a front-end's own arguments (its ``locals()`` on entry: ``out``, the job's keywords and
        ``spec_keywords``), leaving out ``skip`` (the front-end's own: the input, the runner...); ``overrides``
        replace or add keywords (e.g. ``cache=False``)."""
        out = overrides.pop("out", arguments["out"])
        left_out = set(skip) | {"out", "spec_keywords"} | set(overrides)
        keywords = {k: v for k, v in arguments.items() if k not in left_out}
        return cls.make(out, **keywords, **overrides, **arguments.get("spec_keywords", {}))
