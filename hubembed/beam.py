"""``hubembed extract`` as an Apache Beam pipeline: the same shards and manifest, on any runner.

    hubembed extract corpus.txt -o out/ --model minilm --runner DirectRunner
    hubembed extract gs://b/corpus.jsonl --field text -o gs://b/out --model minilm \\
        --runner DataflowRunner --project P --region R --temp_location gs://b/tmp --requirements_file req.txt
    hubembed.beam.extract("corpus.txt", "out/", model="minilm", runner="DirectRunner")

The pipeline::

    [input path] -> read records (hubembed._corpus.inputs, one reader: rows numbered in file order)
                 -> key by shard (row // shard_size) -> GroupByKey
                 -> EmbedShard: the model loaded once per worker (DoFn.setup), the shard's records in
                    row order embedded as the local run embeds one chunk (same batches, same numbers),
                    files written to a temporary name and renamed
                 -> all shard entries + skipped rows -> manifest.json (written last)

So the output equals ``hubembed.extract``'s for the same input and arguments (the test compares
them file by file). Reading is one stream (text formats have no row numbers to split on);
embedding, the expensive part, is spread over the workers. Paths go through Beam's
``FileSystems`` (local, gs:// with ``apache-beam[gcp]``, s3:// with ``apache-beam[aws]``); the
workers need hubembed installed (``--requirements_file`` / ``--setup_file``, or a container).
The header (weights fingerprint, spec) is computed on the launching machine, which loads the
model once too. There is no resume: a failed pipeline is rerun into an empty folder (runners
retry failed bundles themselves).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Optional, Sequence, Tuple, Union

from hubembed._corpus import extract as corpus
from hubembed._corpus import inputs, store
from hubembed._corpus.job import CorpusJob, Settings
from hubembed._load import LoadOptions
from hubembed._pipeline.batching import BATCH_SIZE, MAX_TOKENS
from hubembed._pipeline.spec import EmbedSpec
from hubembed._util import optional
from hubembed.errors import InputError, OutputError

try:
    import apache_beam as beam
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.ml.inference.base import ModelHandler as _BeamModelHandler
    from apache_beam.ml.inference.base import PredictionResult
except ImportError:  # pragma: no cover - the beam extra is optional
    beam = FileSystems = _BeamModelHandler = PredictionResult = None

log = logging.getLogger("hubembed")
LOADS = {"count": 0}  # models loaded by EmbedShard.setup in this process (tests read it)


def _need_beam():
    if beam is None:
        optional("apache_beam", "Running the extraction on Apache Beam")


def _join(out: str, name: str) -> str:
    return FileSystems.join(out, name)


def _write(path: str, data: bytes) -> None:
    """Write to path + .tmp and rename: a reader never sees half a file."""
    tmp = path + ".tmp"
    try:
        with FileSystems.create(tmp) as f:
            f.write(data)
        if FileSystems.exists(path):
            FileSystems.delete([path])
        FileSystems.rename([tmp], [path])
    except Exception as e:  # Beam wraps OS errors in BeamIOError
        raise OutputError(f"writing {path} failed: {e}") from e


def _open(path: str):
    from apache_beam.io.filesystem import CompressionTypes

    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


class ReadRecords(beam.DoFn if beam else object):
    """input path -> (shard index, record); the rows it skips go to the 'skipped' output."""

    def __init__(self, reader_args: dict, shard_size: int):
        self.reader_args, self.shard_size = reader_args, shard_size

    def process(self, path):
        reader = inputs.open_input(path, opener=_open, **self.reader_args)
        for rec in reader.records():
            yield rec.row // self.shard_size, (rec.row, rec.id, rec.text, rec.line)
        for line, why in reader.skipped:
            yield beam.pvalue.TaggedOutput("skipped", [line, why])


class EmbedShard(beam.DoFn if beam else object):
    """(shard index, records) -> the shard's manifest entry, its files written under ``out``."""

    def __init__(self, out: str, load: LoadOptions, settings: Settings, weights_sha256: str):
        self.out, self.load, self.settings, self.weights_sha256 = out, load, settings, weights_sha256
        self.embedder = None

    def setup(self):
        encoder = self.load.load()
        self.embedder = corpus.Embedder(encoder, self.settings, self.weights_sha256)
        LOADS["count"] += 1
        self.counted = False  # counted by the first process(): metrics are not collected during setup

    def process(self, element):
        if not self.counted:
            beam.metrics.Metrics.counter("hubembed", "model_loads").inc()  # per worker: the run's total is reported
            self.counted = True
        index, rows = element
        recs = [inputs.Record(*r) for r in sorted(rows)]
        blobs = self.embedder.render(recs)
        entry, files = store.shard_entry(index, recs[0].row, len(recs), recs[-1].line, blobs, corpus.input_digest(recs))
        for name, data in files.items():
            _write(_join(self.out, name), data)
        yield entry


def _write_manifest(entries, skipped, out: str, header: dict, runner: str) -> None:
    entries = sorted(entries, key=lambda e: e["index"])
    if [e["index"] for e in entries] != list(range(len(entries))):
        raise OutputError(f"{out}: shards {[e['index'] for e in entries]} are not consecutive")
    skipped = sorted(skipped)
    rows = sum(e["rows"] for e in entries)
    m = store.manifest(
        header,
        entries,
        skipped,
        True,
        {"rows": rows, "rows_this_run": rows, "shards": len(entries), "skipped": len(skipped), "runner": runner},
    )
    _write(_join(out, store.MANIFEST), store.manifest_bytes(m))


def _check_out(out: str) -> None:
    if FileSystems.exists(_join(out, store.MANIFEST)):
        raise OutputError(
            f"output folder {out} already holds an extraction; a Beam run does not resume: give "
            f"another folder (or run without --runner to resume locally)"
        )
    if "://" not in out:
        store.ShardStore(out, {}, resume=False)  # local: the same checks as a local run (new or empty folder)


def extract(
    input_path: str,
    out: str,
    *,
    runner: str = "DirectRunner",
    pipeline_args: Sequence[str] = (),
    model: str = "minilm",
    preprocess=None,
    seq_length: Optional[int] = None,
    backend: str = "auto",
    trust: str = "registry",
    quantize: Optional[str] = None,
    level: str = "sentence",
    format: Optional[str] = None,
    subword: str = "first",
    dtype: str = "float32",
    batch_size: int = BATCH_SIZE,
    max_tokens: Optional[int] = MAX_TOKENS,
    spec: Optional[EmbedSpec] = None,
    shard_size: Optional[int] = None,
    cache: Union[bool, str] = False,
    keep_text: bool = False,
    column: Optional[str] = None,
    id_column: Optional[str] = None,
    input_format: Optional[str] = None,
    on_bad: str = "fail",
    on_empty: str = "skip",
    **spec_keywords,
) -> dict:
    """Run the extraction as a Beam pipeline on ``runner``: the same shards and manifest as ``hubembed.extract``.

    Args:
        input_path, out: as ``hubembed.extract`` (paths through Beam's ``FileSystems``: local, gs://, s3://).
        runner: a Beam runner name (DirectRunner, DataflowRunner, FlinkRunner, SparkRunner...).
        pipeline_args: Beam's own flags, e.g. ``["--direct_num_workers=2"]``.
        cache: off by default here (a worker's feature cache lives on its own disk); a folder turns it on.
        spec, **spec_keywords: the ``EmbedSpec`` (or its fields: layers=, pooling=, ...), as ``hubembed.extract``.
        Other arguments: as ``hubembed.extract`` (no resume: a failed pipeline is rerun into an empty folder).

    Returns:
        the manifest, with the run's time.

    Raises:
        MissingDependencyError: apache-beam is not installed.
        InputError: bad arguments, or standard input (workers cannot read it).
        OutputError: the folder already holds an extraction, or a write failed.
    """
    _need_beam()
    if input_path == "-":
        raise InputError(
            "a Beam pipeline reads a file (its workers have no standard input); write the texts to "
            "a file, or run without --runner"
        )
    # Workers run in their own working directory: a relative local path means the launcher's.
    input_path, out = _absolute(input_path), _absolute(out)
    job = CorpusJob.from_arguments(locals(), skip=("input_path", "runner", "pipeline_args"))  # checked here
    settings, reader_args, load = job.settings, job.source.reader_args(), job.load
    reader = inputs.open_input(input_path, opener=_open, **reader_args)
    reader.check_columns()  # a wrong column, a header read as data, repeated ids: before the folder and the model
    _check_out(out)  # before the model loads
    header, weights_sha256 = _header(reader, input_path, load, settings)
    start = time.perf_counter()
    p = beam.Pipeline(options=_options(pipeline_args, runner))
    _build(p, input_path, out, reader_args, EmbedShard(out, load, settings, weights_sha256), header, runner)
    result = p.run()
    result.wait_until_finish()
    return _finish(out, runner, time.perf_counter() - start, _model_loads(result))


def _absolute(path: str) -> str:
    """A local path made absolute (gs://, s3:// and other URLs as they are)."""
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def _model_loads(result) -> Optional[int]:
    """How many times workers loaded the model (Beam's counter; None if the runner reports no metrics)."""
    try:
        found = result.metrics().query(
            beam.metrics.MetricsFilter().with_namespace("hubembed").with_name("model_loads")
        )["counters"]
    except Exception:  # noqa: BLE001 - a runner without metrics support
        return None
    return sum(c.committed or c.attempted or 0 for c in found) if found else None


def _options(pipeline_args, runner: str):
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(list(pipeline_args), runner=runner)


def _header(reader: inputs.Reader, input_path: str, load: LoadOptions, settings: Settings) -> Tuple[dict, str]:
    """The manifest's header and the weights fingerprint, computed on the launching machine (which checks the
    arguments and the input before any worker starts)."""
    local = corpus.Embedder(load.load(), dataclasses.replace(settings, cache=False))
    return corpus.make_header(local, reader.to_dict(), input_path), local.weights_sha256


def _build(p, input_path: str, out: str, reader_args: dict, embed: "EmbedShard", header: dict, runner: str):
    """read -> key by shard -> embed each shard on a worker -> one manifest, written last."""
    read = (
        p
        | "Input" >> beam.Create([input_path])
        | "Read"
        >> beam.ParDo(ReadRecords(reader_args, embed.settings.shard_size))
        .with_output_types(Tuple[int, Any])
        .with_outputs("skipped", main="records")
    )
    entries = read.records | "ByShard" >> beam.GroupByKey() | "Embed" >> beam.ParDo(embed)
    skipped = read.skipped | "AllSkipped" >> beam.combiners.ToList()
    (
        entries
        | "AllShards" >> beam.combiners.ToList()
        | "Manifest" >> beam.Map(_write_manifest, beam.pvalue.AsSingleton(skipped), out, header, runner)
    )


def _finish(out: str, runner: str, seconds: float, model_loads: Optional[int] = None) -> dict:
    with _open(_join(out, store.MANIFEST)) as f:
        m = json.loads(f.read().decode("utf-8"))
    m["summary"].update(
        model_loads_this_run=model_loads,
        seconds_this_run=round(seconds, 3),
        rows_per_second_this_run=round(m["rows"] / seconds, 1) if seconds > 0 else None,
    )
    log.info(
        "Beam (%s) extracted %d rows into %s (%d shards, %.1f s)",
        runner,
        m["rows"],
        out,
        len(m["shards"]),
        seconds,
    )
    return m


# ---------------------------------------------------------------------------
# RunInference: Read -> RunInference(hubembed.beam.ModelHandler(...)) -> your sink
# ---------------------------------------------------------------------------


class ModelHandler(_BeamModelHandler if beam else object):
    """Beam's ``ModelHandler[str, PredictionResult, Encoder]`` for ``RunInference``: texts in, one
    ``PredictionResult(example=text, inference=vector [D] float32, model_id=model)`` per text out.

    >>> with beam.Pipeline() as p:                                          # doctest: +SKIP
    ...     vectors = (p | beam.Create(texts)
    ...                  | RunInference(hubembed.beam.ModelHandler("minilm", pooling="mean")))

    The model is loaded once per worker process (``load_model`` = ``hubembed.load``); each batch Beam
    forms is one ``Encoder.embed`` call, which sorts its texts by length and batches them by a token
    budget. ``KeyedModelHandler(ModelHandler(...))`` keeps keys. ``inference_args`` (RunInference's
    ``inference_args=``) may change spec fields per transform, e.g. ``{"pooling": "cls"}``.

    Args:
        model: what ``hubembed.load`` takes; ``update_model_path`` replaces it (Beam's model updates).
        spec, **spec_keywords: the ``EmbedSpec`` (or its fields), checked here, at pipeline construction.
        seq_length, preprocess, backend, trust, quantize, prompts: as ``hubembed.load``.
        batch_size, max_tokens: ``Encoder.embed``'s batching inside one Beam batch.
        min_batch_size, max_batch_size, large_model, model_copies: Beam's batching and model sharing.
    """

    def __init__(
        self,
        model: str = "minilm",
        *,
        spec: Optional[EmbedSpec] = None,
        seq_length: Optional[int] = None,
        preprocess=None,
        backend: str = "auto",
        trust: str = "registry",
        quantize: Optional[str] = None,
        prompts: Optional[dict] = None,
        batch_size: int = BATCH_SIZE,
        max_tokens: Optional[int] = MAX_TOKENS,
        min_batch_size: Optional[int] = None,
        max_batch_size: Optional[int] = 256,
        large_model: bool = False,
        model_copies: Optional[int] = None,
        **spec_keywords,
    ):
        _need_beam()
        self.spec = EmbedSpec.make(spec, **spec_keywords)  # bad options fail here, before the pipeline runs
        self.options = LoadOptions(str(model), preprocess, seq_length, backend, trust, quantize, prompts)
        self.batching = dict(batch_size=batch_size, max_tokens=max_tokens)
        super().__init__(
            min_batch_size=min_batch_size,
            max_batch_size=max_batch_size,
            large_model=large_model,
            model_copies=model_copies,
        )

    @property
    def model(self) -> str:
        return self.options.model

    def load_model(self) -> Any:
        LOADS["count"] += 1
        return self.options.load()

    def _spec(self, inference_args: Optional[dict]) -> EmbedSpec:
        if not inference_args:
            return self.spec
        unknown = sorted(set(inference_args) - set(self.spec.to_dict()))
        if unknown:
            raise InputError(
                f"inference_args {unknown}: not spec fields (valid: {', '.join(sorted(self.spec.to_dict()))})"
            )
        return self.spec.replace(**inference_args)

    def validate_inference_args(self, inference_args: Optional[dict]) -> None:
        self._spec(inference_args)

    def run_inference(self, batch: Sequence[str], model, inference_args: Optional[dict] = None):
        texts = list(batch)
        vectors = model.embed(texts, spec=self._spec(inference_args), **self.batching)
        return [PredictionResult(t, v, model_id=self.model) for t, v in zip(texts, vectors)]

    def get_num_bytes(self, batch: Sequence[str]) -> int:
        return sum(len(t.encode("utf-8")) for t in batch)

    def get_metrics_namespace(self) -> str:
        return "hubembed"

    def update_model_path(self, model_path: Optional[str] = None) -> None:
        if model_path:
            self.options = self.options.replace(model=str(model_path))
