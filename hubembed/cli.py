"""The command line: ``hubembed inspect | embed | extract | search | index | probe | export | convert | projector``
(also ``python -m hubembed``).

Errors of hubembed's own (``HubEmbedError``) exit with code 1 and their message,
never a stack trace.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import warnings

import numpy as np

import hubembed
from hubembed import __version__, analysis, registry
from hubembed._corpus import index as ann
from hubembed._corpus import inputs, projector, search
from hubembed._corpus.extract import DTYPES
from hubembed._corpus.inputs import INPUT_FORMATS, ON_BAD, ON_EMPTY
from hubembed._corpus.shards import SHARD_FORMATS
from hubembed._formats.convert import convert
from hubembed._formats.export import check_out
from hubembed._hub import audit as audit_mod
from hubembed._hub import resolve
from hubembed._hub.resolve import TRUST
from hubembed._load import LoadOptions
from hubembed._pipeline import batching
from hubembed._pipeline.batching import LONG_MODES
from hubembed._pipeline.layers import COMBINES
from hubembed._pipeline.pooling import POOLINGS
from hubembed._pipeline.quantize import PRECISIONS, Ranges
from hubembed._pipeline.spec import BACKENDS, QUANTIZE, EmbedSpec
from hubembed._pipeline.tokens import SUBWORD
from hubembed._util import optional
from hubembed.errors import HubEmbedError, InputError


def _quiet_tensorflow() -> None:
    """Keep TF's C++ and Python logging out of the command's output."""
    # TF_CPP_MIN_LOG_LEVEL: hubembed/__init__ (imported before this module) defaults it to 3.
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    # hubembed's own progress (e.g. the one-time conversion of the embedded model) goes to stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hubembed: %(message)s"))
    log = logging.getLogger("hubembed")
    if not log.handlers:
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # TF installs a root handler: print once


def _cmd_audit(args) -> int:
    """Audit the encoder (and the preprocessor it would be paired with, where known without loading)."""

    r = resolve.resolve(args.handle)
    paths = [(args.handle, r.path)]
    pre = args.preprocess or r.paired_preprocess
    if pre is None and r.entry is not None and r.entry.preprocess:
        entry = registry.get(r.entry.preprocess)
        pre = r.entry.preprocess if entry.embedded else entry.handle
    if pre:
        paths.append((pre, resolve.resolve(pre).path))
    audits = [(h, audit_mod.audit(p)) for h, p in paths]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "handle": h,
                        "path": a.path,
                        "ok": a.ok,
                        "functions": a.functions,
                        "findings": [vars(f) for f in a.findings],
                    }
                    for h, a in audits
                ],
                indent=1,
            )
        )
    else:
        for h, a in audits:
            print(f"# {h}\n{a.describe()}")
    return 0 if all(a.ok for _, a in audits) else 3


def _load_options(args: argparse.Namespace) -> LoadOptions:
    """The load options a command was given (``--model``, ``--preprocess``, ``--seq-length``, ``--backend``,
    ``--trust``, ``--quantize``; those a command does not have keep their defaults)."""
    names = ("preprocess", "seq_length", "backend", "trust", "quantize")
    return LoadOptions.make(model=args.model, **{k: getattr(args, k) for k in names if hasattr(args, k)})


def _cmd_inspect(args) -> int:

    if args.audit:
        return _cmd_audit(args)
    sig = hubembed.inspect(args.handle, preprocess=args.preprocess, trust=args.trust, seq_length=args.seq_length)
    print(sig.to_json() if args.json else sig.describe())
    return 0


def _cmd_embed(args) -> int:

    spec = _spec(args)
    if not args.texts and sys.stdin.isatty():  # nothing given and nothing piped: say so instead of waiting
        raise InputError(
            'embed: no texts; give them as arguments (hubembed embed "some text" ...) or pipe lines in '
            "(cat texts.txt | hubembed embed)"
        )
    options = _load_options(args)
    options.check_spec(spec)  # what the model loaded so cannot compute: before it loads
    options.check_prompt(spec)
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin]
    enc = options.load()
    vecs = enc.embed(texts, spec=spec)
    layers = args.layers
    if isinstance(enc, hubembed.ExportedEmbedder):  # an export embeds with its own spec (a different one: refused)
        spec, layers = enc.spec, enc.spec.to_dict()["layers"]
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "layer": spec.to_dict()["layers"],
                    "combine": spec.combine,
                    "pooling": spec.pooling,
                    "normalize": spec.normalize,
                    "dim": int(vecs.shape[1]),
                    "spec": spec.to_dict(),
                    "vectors": [[round(float(x), 6) for x in v] for v in vecs],
                }
            )
        )
        return 0
    print(
        f"# {args.model}: layer {layers}, {spec.pooling} pooling, dim {vecs.shape[1]}"
        f"{', L2-normalised' if spec.normalize else ''}"
    )
    with np.printoptions(precision=4, suppress=True, linewidth=120):
        for text, v in zip(texts, vecs):
            print(f"{text[:60]!r:<64} {v[:6]} ... |v|={np.linalg.norm(v):.3f}")
    return 0


def _cmd_export(args) -> int:

    spec = _spec(args)  # the spec, the format and the output folder are checked before the model loads
    check_out(args.out, args.overwrite)
    if args.export_quantize is not None and args.format != "litert":
        raise hubembed.InputError("--quantize int8 exports an int8 LiteRT file: give --format litert with it")
    if args.format == "litert":
        optional("ai_edge_litert.interpreter", "hubembed export --format litert")
    enc = _load_options(args).load()
    if isinstance(enc, hubembed.ExportedEmbedder):
        raise hubembed.InputError(f"{args.model} is an export already; export from the model it was made from")
    out = enc.export(args.out, spec, format=args.format, quantize=args.export_quantize, overwrite=args.overwrite)
    if args.format == "litert":
        return _print_litert_export(args, out)
    info = hubembed.inspect(out)
    if args.json:
        print(info.to_json())
    else:
        r = info.record
        print(
            f"exported {args.model} -> {out}: strings [B] -> float32 [B, {r['dim']}] (layers {r['spec']['layers']}, "
            f"combine {r['spec']['combine']}, {r['spec']['pooling']} pooling"
            f"{', L2-normalised' if r['spec']['normalize'] else ''}); texts of more than "
            f"{r['truncation']['max_word_pieces']} word pieces are truncated; {out}/hubembed.json describes it"
        )
        print(f"see it: hubembed inspect {out}")
    return 0


def _print_litert_export(args, out: str) -> int:
    with open(os.path.join(out, "hubembed.json"), encoding="utf-8") as f:
        r = json.load(f)
    if args.json:
        print(json.dumps(r, indent=1, sort_keys=True))
        return 0
    s = r["spec"]
    print(
        f"exported {args.model} -> {out}/model.tflite ({r['precision']}): ids, mask, segment_ids int32 "
        f"[1, {r['seq_length']}] -> float32 [1, {r['dim']}] (layers {s['layers']}, combine {s['combine']}, "
        f"{s['pooling']} pooling{', L2-normalised' if s['normalize'] else ''}); the BERT tokenizer and its vocabulary "
        f"are in the file's metadata (MediaPipe's TextEmbedder runs it as it is); {out}/hubembed.json describes it"
    )
    return 0


def _cmd_convert(args) -> int:

    out = convert(args.src, args.out, overwrite=args.overwrite)
    print(f"converted {args.src} -> {out} (encoder/, preprocess/, hubembed.json)")
    return 0


def _layer_arg(value: str):
    value = value.strip()
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if "," in value:  # a list: 0,4,-1 (or embeddings,0)
        return [_layer_arg(v) for v in value.split(",") if v.strip()]
    return value


def _c_arg(value: str):
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: 'auto' or a number") from None


def _floats(value: str):
    return [float(v) for v in value.split(",") if v.strip()]


def _spec(args):
    """The ``EmbedSpec`` of the shared spec options (validated here, before any model is loaded)."""

    return EmbedSpec(
        layers=_layer_arg(args.layers),
        combine=args.combine,
        weights=args.weights,
        gamma=args.gamma,
        pooling=args.pooling,
        special_tokens=args.special_tokens,
        normalize=args.normalize,
        attention_layer=None if args.attention_layer is None else _layer_arg(args.attention_layer),
        long=getattr(args, "long", "window"),
        stride=getattr(args, "stride", None),
        transform=args.transform,
        truncate_dim=getattr(args, "truncate_dim", None),
        precision=getattr(args, "precision", "float32"),
        ranges=getattr(args, "ranges", None),
        prompt=getattr(args, "prompt", None),
        prompt_name=getattr(args, "prompt_name", None),
        include_prompt=getattr(args, "include_prompt", True),
    )


def _extract_kwargs(args) -> dict:
    level = "tokens" if args.tokens else "words" if args.words else "sentence"
    return dict(
        model=args.model,
        level=level,
        format=args.format,
        subword=args.subword,
        spec=_spec(args),
        dtype=args.dtype,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens or None,
        shard_size=args.shard_size,
        column=args.column,
        id_column=args.id_column,
        input_format=args.input_format,
        on_bad=args.on_bad,
        on_empty=args.on_empty,
        preprocess=args.preprocess,
        seq_length=args.seq_length,
        backend=args.backend,
        trust=args.trust,
        quantize=args.quantize,
        keep_text=args.keep_text,
    )


def _cmd_extract(args) -> int:

    kwargs = _extract_kwargs(args)
    if args.runner and args.resume:
        raise InputError("--resume with --runner: a Beam pipeline does not resume; rerun it into an empty folder")
    if args.runner:
        from hubembed import beam  # imports apache_beam (optional, slow to import): only for --runner

        m = beam.extract(
            args.input,
            args.out,
            runner=args.runner,
            pipeline_args=args.pipeline_args,
            cache=False if args.no_cache else (args.cache or False),
            **kwargs,
        )
    else:
        m = hubembed.extract(
            args.input,
            args.out,
            resume=args.resume,
            quiet=args.quiet,
            cache=not args.no_cache and (args.cache or True),
            **kwargs,
        )
    s, spec = m["summary"], m["header"]["spec"]
    speed = f", {s['rows_per_second_this_run']} rows/s" if s.get("rows_per_second_this_run") else ""
    print(
        f"{args.out}: {s['rows']} rows in {s['shards']} {spec['format']} shards ({spec['level']} level, "
        f"{s['rows_this_run']} this run{speed}), dim {spec['dim']} {spec['dtype']}, "
        f"{s['skipped']} input rows skipped; manifest: {args.out}/manifest.json"
    )
    return 0


def _labelled(path, args):
    """(texts, labels) of a labelled file: the label column is read as the row id."""

    r = inputs.open_input(
        path,
        column=args.text_column,
        id_column=args.label_column,
        fmt=args.input_format,
        on_bad="fail",
        on_empty="skip",
    )
    if r.format == "txt" or not args.label_column:
        raise InputError(
            f"{path}: a probe needs labels: a .csv/.tsv/.jsonl/.parquet file with --text-column and --label-column"
        )
    texts, labels = [], []
    for rec in r.records():
        if args.limit and len(texts) >= args.limit:
            break
        texts.append(rec.text)
        labels.append(rec.id)
    return texts, labels


def _check_labels(path: str, labels: list, args) -> None:
    """Labels a probe can learn, checked before anything is embedded: every class with at least 2 texts. A column
    of unique or nearly unique values (swapped columns, a float score) is named as such."""
    counts: dict = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    single = [k for k, n in counts.items() if n < 2]
    if not single and len(counts) >= 2:
        return
    example = ", ".join(repr(k[:40]) for k in single[:3])
    raise InputError(
        f"{path}: --label-column {args.label_column} holds {len(counts)} distinct value(s) over {len(labels)} rows "
        f"({len(single)} of them only once, e.g. {example}): a probe needs classes of at least 2 texts each. Is it "
        f"the label column (swapped with --text-column {args.text_column}? a score rather than a class?)"
    )


def _cmd_probe(args) -> int:

    spec = EmbedSpec(
        layers=_layer_arg(args.layers),
        combine="none",
        special_tokens=args.special_tokens,
        long=getattr(args, "long", "window"),
        stride=getattr(args, "stride", None),
    )
    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs={args.jobs}; valid: a number of fits at once >= 1 (default: every core)")
    texts, labels = _labelled(args.data, args)  # the files and their columns checked before the model loads
    _check_labels(args.data, labels, args)
    dev_data = _labelled(args.dev, args) if args.dev else None
    enc = _load_options(args).load()
    poolings = [p.strip() for p in args.poolings.split(",") if p.strip()]
    kw = dict(
        layers=spec.layers, poolings=poolings, special_tokens=spec.special_tokens, long=spec.long, stride=spec.stride
    )
    feats = analysis.features(enc, texts, **kw)
    dev = None
    if dev_data is not None:
        dev = (analysis.features(enc, dev_data[0], **kw), dev_data[1])
    table = analysis.probe(
        feats, labels, dev=dev, folds=args.folds, C=args.C, n_jobs=args.jobs, progress=False if args.quiet else None
    )
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "data": args.data,
                    "dev": args.dev,
                    "folds": table.folds,
                    "rows": table.rows,
                    "best": table.best(),
                },
                default=str,
            )
        )
    else:
        print(f"# linear probe, {args.model}: {args.data}" + (f" (dev: {args.dev})" if args.dev else ""))
        print(table.to_markdown())
        print(table.recommendation())
    if args.plot and args.plot != "none":
        from hubembed import plots  # imports matplotlib (optional): only for --plot

        where = os.path.join(os.path.basename(os.path.dirname(os.path.abspath(args.data))), os.path.basename(args.data))
        path = plots.probe_table(table, args.plot, title=f"{where}: linear probe per layer ({args.model})")
        print(f"plot: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _cmd_projector(args) -> int:
    record = projector.to_projector(
        args.extractions,
        args.logdir,
        names=args.name,
        max_points=args.max_points,
        seed=args.seed,
        ranges=args.ranges,
        overwrite=args.overwrite,
    )
    units = {"sentence": "texts", "tokens": "word pieces", "words": "words"}
    for e in record["embeddings"]:
        unit = units.get(e["level"], "points")
        shown = (
            f"{e['points']} of {e['points_total']} {unit} (a uniform sample, seed {args.seed})"
            if e["sampled"]
            else f"all {e['points_total']} {unit}"
        )
        print(
            f"{e['name']}: {shown}, dim {e['dim']} -> tensor {e['tensor_name']}; for projector.tensorflow.org: "
            f"{os.path.join(args.logdir, e['vectors'])} + {os.path.join(args.logdir, e['metadata'])}"
        )
    print(f"see it: tensorboard --logdir {args.logdir}, then its Projector tab (http://localhost:6006/#projector)")
    return 0


def _cmd_search(args) -> int:
    ex = hubembed.open_extraction(args.out)
    options = dict(metric=args.metric, rescore=args.rescore, rescore_multiplier=args.rescore_multiplier)
    options.update(ranges=args.ranges, transform=args.transform, batch_size=args.batch_size)
    options.update(exact=args.exact, ef_search=args.ef_search, prompt=args.prompt, prompt_name=args.prompt_name)
    if ex.level != "sentence":
        raise InputError(
            f"{ex.out} holds {ex.level}-level vectors: the command searches with texts, which have no one "
            f"{ex.level[:-1]} vector; in Python, ex.search(vectors) takes query vectors"
        )
    search.check_extraction(ex, args.verify)  # the folder, its index and the options, before standard input or a model
    p = search.plan(ex, args.k, args.metric, args.rescore, args.rescore_multiplier, args.ranges)
    if args.ef_search is not None:
        ann.check_int("ef_search", args.ef_search)
    record = None if args.exact else ann.usable(ex)
    if record:
        ann.check_plan(ex, p, record, args.rescore, args.ef_search)
    if not args.queries and sys.stdin.isatty():  # nothing given and nothing piped: say so instead of waiting
        raise InputError(
            'search: no queries; give them as arguments (hubembed search OUT "a query" ...) or pipe lines in '
            "(cat queries.txt | hubembed search OUT)"
        )
    queries = args.queries or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    encoder = _load_options(args).load() if args.model else None
    results = ex.search(queries, args.k, encoder=encoder, **options)
    if args.json:
        print(search.dumps(results))
        return 0
    how = results.metric + (", rescored" if results.rescored else "")
    how += f", {results.index_record['kind']} index" if results.index_record else ""
    for query, hits in zip(queries, results):
        print(f"# {query!r}: {len(hits)} of {len(ex)} rows, {how}")
        for h in hits:
            text = "" if h.text is None else "  " + re.sub(r"\s+", " ", h.text)[:200]
            print(f"{h.rank:>4}  {h.score:.4f}  {h.id}{text}")
    return 0


def _cmd_index(args) -> int:
    ex = hubembed.open_extraction(args.out)
    if args.remove:
        had = ann.remove_index(ex)
        print(f"{ex.out}: index removed" if had else f"{ex.out} had no index")
        return 0
    options = dict(metric=args.metric, ranges=args.ranges, m=args.m, ef_construction=args.ef_construction)
    options.update(ef_search=args.ef_search, overwrite=args.overwrite, progress=not args.quiet)
    r = ex.build_index(**options)
    print(
        f"{os.path.join(ex.out, r['file'])}: faiss {r['kind']} ({', '.join(f'{k} {v}' for k, v in r['params'].items())}"
        f"), {r['vectors']} vectors of {r['dim']} dims, {r['metric']}; {r['bytes'] / 2**20:.1f} MB, built in "
        f"{r['build_seconds']:.1f} s; hubembed search {ex.out} ... uses it (--exact: not)"
    )
    return 0


def _trust_arg(s) -> None:
    s.add_argument(
        "--trust",
        default="registry",
        choices=TRUST,
        help="registry (default): audit models outside the registry and refuse flagged ones; "
        "audit: audit every model; any: load without auditing",
    )


def _spec_options(s, *, layers: str = "-1", pooling: bool = True, export: bool = False, codes: bool = True) -> None:
    """The embedding spec's options (``hubembed.EmbedSpec``), the same on every command that embeds (``export``: not
    those an export refuses: windows, truncate_dim, precision, ranges; ``codes=False``: not precision and ranges)."""
    g = s.add_argument_group("embedding spec (hubembed.EmbedSpec)")
    g.add_argument(
        "--layers",
        "--layer",
        dest="layers",
        default=layers,
        help=f"Transformer blocks, 0-based, negative from the end: -1, 3, 0,4,-1, -4:, 2:5, all, embeddings "
        f"(default: {layers})",
    )
    if not export:  # an export truncates to one window
        g.add_argument(
            "--long",
            default="window",
            choices=LONG_MODES,
            help="texts longer than a window: overlapping windows stitched together, or cut (default: window)",
        )
        g.add_argument("--stride", type=int, default=None, help="overlap of windows in tokens (default: half a window)")
    g.add_argument(
        "--no-special-tokens",
        dest="special_tokens",
        action="store_false",
        help="leave [CLS]/[SEP] out of mean/max/... pooling",
    )
    if not pooling:
        return
    g.add_argument("--combine", default="mean", choices=COMBINES, help="how several layers become one (default: mean)")
    g.add_argument(
        "--weights",
        type=_floats,
        default=None,
        metavar="W1,W2,...",
        help="one per selected layer, for --combine weighted | scalar_mix",
    )
    g.add_argument("--gamma", type=float, default=1.0, help="the scale of --combine scalar_mix (default: 1.0)")
    g.add_argument(
        "--pooling", default="mean", choices=POOLINGS, help="token vectors -> one vector per text (default: mean)"
    )
    g.add_argument(
        "--attention-layer",
        default=None,
        help="the block whose attention weights tokens (--pooling attention; default: the highest selected layer)",
    )
    g.add_argument("--normalize", action="store_true", help="L2-normalise the vectors")
    g.add_argument(
        "--transform",
        default=None,
        metavar="FILE.npz",
        help="a fitted centering/whitening (hubembed.analysis.Whitening.save), applied after pooling",
    )
    if export:  # an export gives the pooled float32 vectors
        return
    g.add_argument("--truncate-dim", type=int, default=None, help="keep the first n dimensions (before --normalize)")
    if not codes:  # `ranges`: the float vectors codes are made from
        return
    g.add_argument(
        "--precision",
        default="float32",
        choices=PRECISIONS,
        help="quantize the vectors last (int8/uint8 need --ranges), as sentence-transformers' quantize_embeddings",
    )
    g.add_argument(
        "--ranges",
        default=None,
        metavar="FILE.npz",
        help="int8/uint8 calibration ranges (hubembed.quantize.Ranges.fit(vectors).save(FILE))",
    )
    g.add_argument("--prompt", default=None, metavar="TEXT", help='a string put before each text ("query: ")')
    g.add_argument("--prompt-name", default=None, metavar="NAME", help="one of the model's named prompts instead")
    g.add_argument(
        "--no-include-prompt",
        dest="include_prompt",
        action="store_false",
        help="leave [CLS] and the prompt's pieces out of mean/max/... pooling (sentence-transformers' include_prompt)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hubembed", description="Contextual embeddings from TF Hub BERT encoders.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")
    _add_inspect(sub)
    _add_embed(sub)
    _add_extract(sub)
    _add_probe(sub)
    _add_export(sub)
    _add_convert(sub)
    _add_projector(sub)
    _add_search(sub)
    _add_index(sub)
    _add_ranges(sub)
    _add_models(sub)
    for command in sub.choices.values():
        _complete_help(command)
    return p


# Help for the options several commands share, where a command gives none of its own.
_COMMON_HELP = {
    "model": "registry name, tfhub.dev handle, Kaggle URL, local folder or (embed) a hubembed export",
    "preprocess": "preprocessor handle to pair instead of the automatic pairing",
    "seq_length": "the window: word pieces per row, [CLS]/[SEP] included (default: the model's trained length)",
    "backend": "auto: the Hub model, the Model Garden rebuild for what it does not export; hub: never rebuild; "
    "garden: always the rebuild",
    "batch_size": "texts per batch",
    "json": "print JSON instead of the readable output",
    "dtype": "the stored vectors' float type",
    "label_column": "the column (field) holding the labels",
    "input_format": "the input format, instead of the extension",
    "folds": "cross-validation folds",
    "overwrite": "replace OUT if it exists",
}


def _complete_help(parser: argparse.ArgumentParser) -> None:
    """Every option of a command says what it does and, where it has one, its default."""
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if action.help is None:
            action.help = _COMMON_HELP[action.dest]  # a new option without help: say what it does here
        shown = action.default not in (None, False, True, argparse.SUPPRESS) and not isinstance(action.default, list)
        if shown and "default" not in action.help:
            action.help += f" (default: {action.default})"


def _add_inspect(sub) -> None:
    s = sub.add_parser("inspect", help="what an encoder exports, its preprocessor, what can be extracted")
    s.add_argument("handle", help="registry name, tfhub.dev handle, Kaggle URL or local folder")
    s.add_argument("--preprocess", help="preprocessor handle to pair instead of the automatic pairing")
    s.add_argument("--json", action="store_true", help="stable JSON instead of the readable summary")
    s.add_argument("--seq-length", type=int, default=None, help="the window to pack (default: the model's)")
    s.add_argument(
        "--audit",
        action="store_true",
        help="read the SavedModels' graphs without running them: op types per function, and what "
        "touches files, the network or Python (exit code 3 if anything is flagged)",
    )
    _trust_arg(s)
    s.set_defaults(func=_cmd_inspect)


def _quantize_arg(s) -> None:
    s.add_argument(
        "--quantize",
        choices=QUANTIZE,
        default=None,
        help="int8: the encoder's matrix products in int8 (converted once to TFLite, cached; about 2x faster, "
        "mean cosine 0.999 to float32 on minilm); bf16: on CPUs with bf16 instructions (default: float32)",
    )


def _add_embed(sub) -> None:
    s = sub.add_parser("embed", help="print sentence vectors for a few texts (arguments or stdin lines)")
    s.add_argument("texts", nargs="*")
    s.add_argument("--model", default="minilm")
    s.add_argument("--preprocess")
    s.add_argument("--seq-length", type=int, default=None)
    _spec_options(s)
    s.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="auto: the Hub model, the Model Garden rebuild for what it does not export; "
        "garden: always the rebuild (early exit)",
    )
    _quantize_arg(s)
    s.add_argument("--json", action="store_true")
    _trust_arg(s)
    s.set_defaults(func=_cmd_embed)


def _add_extract(sub) -> None:
    s = sub.add_parser("extract", help="embed a corpus to disk: sharded, resumable, with a manifest")
    s.add_argument("input", help="a .txt (a text a line), .jsonl, .csv, .tsv or .parquet file, or - for stdin")
    s.add_argument("-o", "--out", required=True, help="output folder (new, empty, or one to --resume)")
    s.add_argument("--model", default="minilm")
    s.add_argument("--preprocess")
    _spec_options(s)
    s.add_argument("--dtype", default="float32", choices=DTYPES)
    s.add_argument("--batch-size", type=int, default=batching.BATCH_SIZE, help="rows per batch at most")
    s.add_argument(
        "--max-tokens",
        type=int,
        default=batching.MAX_TOKENS,
        help="padded tokens per batch at most (0: no token budget, --batch-size rows)",
    )
    s.add_argument(
        "--shard-size",
        type=int,
        default=None,
        help="texts per shard, and in memory at once (default 10000; 1000 with --tokens/--words)",
    )
    s.add_argument("--seq-length", type=int, default=None)
    s.add_argument("--resume", action="store_true", help="continue an interrupted extraction in --out")
    s.add_argument(
        "--column", "--field", dest="column", help="the column (.csv/.tsv/.parquet) or field (.jsonl) holding the text"
    )
    s.add_argument("--id-column", "--id-field", dest="id_column", help="column/field with row ids (default: line)")
    s.add_argument("--input-format", choices=INPUT_FORMATS, help="the input format, instead of the extension")
    s.add_argument(
        "--on-bad",
        default="fail",
        choices=ON_BAD,
        help="rows that are not UTF-8 (or not valid JSON, or ragged): stop, or skip and list them",
    )
    s.add_argument("--on-empty", default="skip", choices=ON_EMPTY, help="empty lines")
    s.add_argument("--backend", default="auto", choices=BACKENDS)
    _quantize_arg(s)
    level = s.add_mutually_exclusive_group()
    level.add_argument("--tokens", action="store_true", help="a vector per word piece, with character offsets")
    level.add_argument("--words", action="store_true", help="a vector per word (from its pieces, --subword)")
    s.add_argument(
        "--subword", default="first", choices=SUBWORD, help="how --words makes a word's vector from its pieces"
    )
    s.add_argument(
        "--format",
        choices=SHARD_FORMATS,
        default=None,
        help="output shards (default: npy for sentence vectors, parquet for --tokens/--words)",
    )
    s.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="feature cache folder (default $HUBEMBED_CACHE/features): texts embedded before with "
        "the same weights and spec are not encoded again",
    )
    s.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    s.add_argument(
        "--keep-text",
        action="store_true",
        help="store each text with its vector (part-N.text.json beside npy shards; a text column or feature in "
        "parquet and tfrecord): hubembed search prints it, ex.texts() reads it (--tokens/--words always do)",
    )
    s.add_argument(
        "--runner",
        default=None,
        help="run as an Apache Beam pipeline on this runner (DirectRunner, DataflowRunner, FlinkRunner, "
        "SparkRunner); further --flags go to Beam's PipelineOptions",
    )
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _trust_arg(s)
    s.set_defaults(func=_cmd_extract)


def _add_probe(sub) -> None:
    s = sub.add_parser("probe", help="which layer and pooling: a linear probe per layer x pooling on labelled texts")
    s.add_argument("--model", default="minilm")
    s.add_argument("--preprocess")
    s.add_argument("--data", required=True, help="training texts with labels (.csv/.tsv/.jsonl/.parquet)")
    s.add_argument("--dev", help="held-out texts with labels, same columns (dev accuracy besides the cv)")
    s.add_argument(
        "--text-column",
        "--text-field",
        dest="text_column",
        required=True,
        help="column name, or 0-based position in a headerless .tsv/.csv",
    )
    s.add_argument("--label-column", "--label-field", dest="label_column", required=True)
    s.add_argument("--input-format", choices=[f for f in INPUT_FORMATS if f != "txt"])
    s.add_argument("--seq-length", type=int, default=None)
    _spec_options(s, layers="embeddings,all", pooling=False)
    s.add_argument(
        "--poolings", default="cls,mean", help="comma-separated: cls, mean, max, mean_max, mean_sqrt_len, weightedmean"
    )
    s.add_argument("--folds", type=int, default=5)
    s.add_argument(
        "--C",
        type=_c_arg,
        default="auto",
        help="inverse regularisation of the logistic regression: 'auto' (default: chosen per cell by "
        "cross-validation among 0.001..10) or a number",
    )
    s.add_argument("--limit", type=int, default=None, help="the first N texts of each file")
    s.add_argument(
        "--jobs",
        type=int,
        default=None,
        help=f"fits at once, in worker processes; the table is the same for any number (default: every core this "
        f"process may use, {analysis.cpu_count()} here; 1 for features under {analysis.PARALLEL_MIN:,} numbers "
        f"(texts x dims) a cell)",
    )
    s.add_argument("--plot", default="probe.png", help="the plot's path (.png or .svg), or 'none'")
    _quantize_arg(s)
    s.add_argument("--json", action="store_true")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar (shown when stderr is a terminal)")
    _trust_arg(s)
    s.set_defaults(func=_cmd_probe)


def _add_export(sub) -> None:
    s = sub.add_parser(
        "export",
        help="one self-contained model, the spec baked in: a SavedModel (strings in, vectors out) for TF Hub, Keras, "
        "TF Serving, or a LiteRT file for MediaPipe's TextEmbedder (Android, iOS, web) and LiteRT",
    )
    s.add_argument("model", help="registry name, tfhub.dev handle, Kaggle URL or local folder")
    s.add_argument("out", help="output folder (new or empty): the model and hubembed.json")
    s.add_argument(
        "--format",
        choices=("savedmodel", "litert"),
        default="savedmodel",
        help="savedmodel (default): TensorFlow, strings in; litert: OUT/model.tflite, the tokenizer in its metadata",
    )
    s.add_argument(
        "--quantize",
        dest="export_quantize",
        choices=("int8",),
        default=None,
        help="with --format litert: the dense layers in int8 (dynamic range; default float32)",
    )
    s.add_argument("--preprocess")
    s.add_argument("--seq-length", type=int, default=None, help="the window; longer texts are truncated")
    _spec_options(s, export=True)
    s.add_argument("--backend", default="auto", choices=BACKENDS)
    s.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    s.add_argument("--json", action="store_true", help="print the export's description as JSON")
    _trust_arg(s)
    s.set_defaults(func=_cmd_export)


def _add_convert(sub) -> None:
    s = sub.add_parser("convert", help="a Hugging Face BERT folder -> a Hub-format encoder + preprocessor")
    s.add_argument("src", help="folder with config.json, model.safetensors, vocab.txt")
    s.add_argument("out", help="output folder (encoder/, preprocess/, hubembed.json)")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(func=_cmd_convert)


def _add_projector(sub) -> None:
    s = sub.add_parser(
        "projector",
        help="extractions as a TensorBoard log folder for its Embedding Projector (and the TSV files "
        "projector.tensorflow.org loads)",
    )
    s.add_argument(
        "extractions", nargs="+", metavar="OUT", help="extraction folders (hubembed extract -o OUT), side by side"
    )
    s.add_argument(
        "logdir", metavar="LOGDIR", help="the log folder to write (new or empty): tensorboard --logdir LOGDIR"
    )
    s.add_argument(
        "--max-points",
        type=int,
        default=projector.DEFAULT_MAX_POINTS,
        help="points per extraction at most (texts, or word pieces / words with --tokens/--words output): more is "
        "a uniform sample without replacement, in row order; the projector loads every point into the browser",
    )
    s.add_argument("--seed", type=int, default=0, help="the sample's random seed (default: 0)")
    s.add_argument(
        "--name",
        action="append",
        default=None,
        help="each extraction's name in the log folder and the projector, once per OUT in order "
        "(default: each folder's name)",
    )
    s.add_argument(
        "--ranges",
        default=None,
        metavar="FILE.npz",
        help="int8/uint8 extractions: their calibration ranges, to show the codes as float32 bucket middles",
    )
    s.add_argument("--overwrite", action="store_true", help="replace a projector log already in LOGDIR")
    s.set_defaults(func=_cmd_projector)


def _add_search(sub) -> None:
    s = sub.add_parser(
        "search",
        help="the rows of an extraction nearest some queries (an exact scan, shard by shard): rank, score, id, text",
    )
    s.add_argument("out", metavar="OUT", help="an extraction folder (hubembed extract -o OUT), sentence level")
    s.add_argument("queries", nargs="*", metavar="QUERY", help="query texts (default: lines of standard input)")
    s.add_argument("-k", type=int, default=10, help="hits per query (more than the rows: every row, ranked)")
    s.add_argument(
        "--model",
        default=None,
        help="embed the queries with this model (its weights must be the extraction's; default: the manifest's)",
    )
    s.add_argument(
        "--metric",
        choices=search.METRICS,
        default=None,
        help="the score (default: dot for vectors extracted with --normalize, where it equals cosine; else cosine)",
    )
    s.add_argument(
        "--no-rescore",
        dest="rescore",
        action="store_false",
        help="codes (--precision int8/uint8/binary): keep the first stage's scores, on the codes, without "
        "rescoring the best with the float query",
    )
    s.add_argument(
        "--rescore-multiplier",
        type=int,
        default=4,
        help="codes: how many times k candidates of the first stage are rescored with the float query",
    )
    s.add_argument(
        "--ranges", default=None, metavar="FILE.npz", help="int8/uint8 extractions: their calibration ranges"
    )
    s.add_argument(
        "--transform",
        default=None,
        metavar="FILE.npz",
        help="the transform the extraction applied (a manifest records its sha256, not its parameters)",
    )
    s.add_argument("--batch-size", type=int, default=batching.BATCH_SIZE, help="queries embedded per batch at most")
    s.add_argument(
        "--prompt",
        default=None,
        metavar="TEXT",
        help="the queries' prompt (default: the model's query prompt for a corpus extracted with a document prompt "
        "by name, else the corpus's own prompt)",
    )
    s.add_argument("--prompt-name", default=None, metavar="NAME", help="one of the model's named prompts instead")
    s.add_argument("--verify", action="store_true", help="check every shard's sha256 against the manifest first")
    s.add_argument(
        "--exact", action="store_true", help="scan every shard even when OUT has an index (hubembed index OUT)"
    )
    s.add_argument(
        "--ef-search",
        type=int,
        default=None,
        help="with an index: the search-time breadth, more is slower and nearer exact (default: the index's, "
        f"{ann.EF_SEARCH} unless built otherwise; at least k)",
    )
    s.add_argument("--json", action="store_true", help="print the results as JSON")
    _trust_arg(s)
    s.set_defaults(func=_cmd_search)


def _add_index(sub) -> None:
    s = sub.add_parser(
        "index",
        help="an approximate index (FAISS HNSW) of an extraction's vectors, saved in its folder: hubembed search "
        "uses it from then on",
    )
    s.add_argument("out", metavar="OUT", help="an extraction folder (hubembed extract -o OUT), finished")
    s.add_argument(
        "--metric",
        choices=search.METRICS,
        default=None,
        help="what searches through it score by (default: dot for vectors extracted with --normalize, else cosine)",
    )
    s.add_argument(
        "--ranges", default=None, metavar="FILE.npz", help="int8/uint8 extractions: their calibration ranges"
    )
    s.add_argument("--m", type=int, default=ann.M, help="HNSW neighbours per vector: more is larger and nearer exact")
    s.add_argument(
        "--ef-construction", type=int, default=ann.EF_CONSTRUCTION, help="HNSW build-time breadth: more is slower"
    )
    s.add_argument(
        "--ef-search", type=int, default=ann.EF_SEARCH, help="the search-time breadth searches use unless told"
    )
    s.add_argument("--overwrite", action="store_true", help="replace an index already there (rebuild a stale one)")
    s.add_argument("--remove", action="store_true", help="remove OUT's index and its record instead of building one")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_index)


def _cmd_ranges(args) -> int:
    """The int8/uint8 calibration ranges ``--precision`` needs: per-dimension minima and maxima of float vectors,
    from a float32 extraction or from texts embedded with the spec, saved as ``--ranges`` reads them."""
    if os.path.isfile(os.path.join(args.source, "manifest.json")):
        vectors, spec, what = _extraction_vectors(args)
    else:
        vectors, spec, what = _text_vectors(args)
    r = Ranges.fit(vectors)
    path = r.save(args.out)
    print(f"{path}: ranges of {len(vectors)} {vectors.shape[1]}-dim vectors ({what}), sha256 {r.sha256[:16]}...")
    print(f"use them with the same spec: --precision int8 --ranges {path}  ({_describe_spec(spec)})")
    return 0


def _extraction_vectors(args) -> tuple:
    given = [o for o, v in (("--model", args.model != "minilm"), ("--column", args.column)) if v]
    if given:
        raise InputError(f"{args.source} is an extraction: its vectors are fitted as stored; drop {', '.join(given)}")
    ex = hubembed.open_extraction(args.source)
    if ex.level != "sentence" or ex.spec.precision != "float32":
        raise InputError(
            f"{args.source} holds {ex.level} {ex.spec.precision} rows; ranges are fitted on float sentence vectors "
            f"(extract without --precision, or give a text file)"
        )
    return ex.vectors().astype(np.float32), ex.spec, f"the sentence vectors of {args.source}"


def _text_vectors(args) -> tuple:
    spec = _spec(args)
    reader = inputs.open_input(args.source, column=args.column)
    reader.check_columns()
    options = _load_options(args)
    options.check_spec(spec)
    texts = [r.text for r in reader.records()]
    if len(texts) < 2:
        raise InputError(f"{args.source}: {len(texts)} text(s); ranges need at least 2 (a few hundred is usual)")
    return options.load().embed(texts, spec=spec), spec, f"{args.source} embedded by {args.model}"


def _describe_spec(spec) -> str:
    d = spec.to_dict()
    return ", ".join(f"{k}={d[k]}" for k in ("layers", "pooling", "normalize", "truncate_dim") if d.get(k) is not None)


def _add_ranges(sub) -> None:
    s = sub.add_parser(
        "ranges",
        help="int8/uint8 calibration ranges for --precision: from a float extraction, or texts embedded with the spec",
    )
    s.add_argument("source", help="an extraction folder (float32 sentence vectors) or a text file (.txt/.csv/...)")
    s.add_argument("-o", "--out", required=True, help="the ranges file to write (.npz)")
    s.add_argument("--model", default="minilm")
    s.add_argument("--column", default=None, help="the text column of a .csv/.tsv/.jsonl/.parquet file")
    _spec_options(s, codes=False)
    _quantize_arg(s)
    _trust_arg(s)
    s.set_defaults(func=_cmd_ranges)


def _cmd_models(args) -> int:
    rows = [registry.get(n) for n in registry.names("encoder")]
    if args.json:
        print(json.dumps([e.to_dict() for e in rows], indent=1))
        return 0
    for e in rows:
        shape = f"{e.layers or '?'} layers x {e.hidden_size or '?'}"
        print(f"{e.name:<60} {e.family or '':<14} {shape:<18} {e.casing}")
    return 0


def _add_models(sub) -> None:
    s = sub.add_parser("models", help="the registry's encoders (names to give --model): family, size, casing")
    s.add_argument("--json", action="store_true", help="every registry field, as JSON")
    s.set_defaults(func=_cmd_models)


# The Python argument names messages use -> the options of the command line.
OPTION_NAMES = {
    "layers": "--layers", "combine": "--combine", "weights": "--weights", "gamma": "--gamma",
    "pooling": "--pooling", "special_tokens": "--no-special-tokens", "normalize": "--normalize",
    "attention_layer": "--attention-layer", "long": "--long", "stride": "--stride", "transform": "--transform",
    "seq_length": "--seq-length", "backend": "--backend", "trust": "--trust", "dtype": "--dtype",
    "batch_size": "--batch-size", "max_tokens": "--max-tokens", "shard_size": "--shard-size", "format": "--format",
    "subword": "--subword", "on_bad": "--on-bad", "on_empty": "--on-empty", "column": "--column",
    "id_column": "--id-column", "input_format": "--input-format", "C": "--C", "truncate_dim": "--truncate-dim",
    "precision": "--precision", "ranges": "--ranges", "quantize": "--quantize", "max_points": "--max-points",
    "seed": "--seed", "names": "--name", "k": "-k", "metric": "--metric", "rescore_multiplier": "--rescore-multiplier",
    "prompt": "--prompt", "prompt_name": "--prompt-name", "include_prompt": "--no-include-prompt",
    "exact": "--exact", "ef_search": "--ef-search", "ef_construction": "--ef-construction", "m": "--m",
}  # fmt: skip


def cli_terms(message: str) -> str:
    """An error message in the command line's terms: ``weights=`` -> ``--weights=``, ``on_bad='skip'`` ->
    ``--on-bad='skip'``; a list of layers is written 0,4,-1 there."""
    out = re.sub(r"(?<![\w.(-])([A-Za-z_]+)=", lambda m: f"{OPTION_NAMES.get(m.group(1), m.group(1))}=", message)
    out = re.sub(r"hubembed\.load\(('[^']*')\)", r"--model \1", out)
    for python, cli in PYTHON_SPELLINGS.items():
        out = out.replace(python, cli)
    return out.replace("a list of those", "a list of those (0,4,-1)")


# Phrases of the Python API that messages use -> the command line's.
PYTHON_SPELLINGS = {
    "`hubembed.registry.names()`": "`hubembed models`",
    "truncate_dim and precision": "--truncate-dim and --precision",
    "hubembed.load(..., trust='any') / --trust any": "--trust any",
    "`ex.build_index(overwrite=True)`": "`hubembed index OUT --overwrite`",
    "`--exact=True`": "`--exact`",
    "`ex.build_index(overwrite=True, --metric='dot')`": "`hubembed index OUT --overwrite --metric dot`",
    "`ex.build_index(overwrite=True, --metric='cosine')`": "`hubembed index OUT --overwrite --metric cosine`",
    "rescore=False": "--no-rescore",
}


# Options whose values may start with "-" ("-4:", "-1,-2"): argparse would read such a value as an option.
NEGATIVE_VALUES = ("--layers", "--layer", "--attention-layer")


def _attach_values(argv):
    """``--layers -4:`` -> ``--layers=-4:``, so the layer specs the help suggests parse as written."""
    out, args = [], list(argv)
    while args:
        a = args.pop(0)
        if a in NEGATIVE_VALUES and args:
            a = f"{a}={args.pop(0)}"
        out.append(a)
    return out


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(_attach_values(sys.argv[1:] if argv is None else argv))
    if extra and not getattr(args, "runner", None):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.pipeline_args = extra  # Beam's own options (--runner given)
    if args.version:
        print(f"hubembed {__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _quiet_tensorflow()

    try:
        return args.func(args)
    except HubEmbedError as e:
        print(f"hubembed: error: {cli_terms(str(e))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hubembed: interrupted", file=sys.stderr)
        return 130


def run() -> int:
    """The ``hubembed`` console script and ``python -m hubembed``: the command as a process of its own.

    Such a process never uses ``tf.keras``, yet ``import tensorflow`` eagerly imports the optimizers of the Keras
    that ``tf.keras`` names: with Keras 3 that loads Keras 3 (and scikit-learn where installed), about 1.4 s and
    95 MB here; tf_keras's are lighter. So unless the environment says otherwise, the process names tf_keras
    (``TF_USE_LEGACY_KERAS=1``). ``main`` (called from Python, in a process that may use Keras) leaves it alone.
    """
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    try:
        return main()
    except BrokenPipeError:  # `hubembed models | head`: the reader left; no traceback, as other tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
