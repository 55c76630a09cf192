"""Prompts (``EmbedSpec(prompt=, prompt_name=, include_prompt=)``, ``load(..., prompts=)``, ``embed_queries`` /
``embed_documents``, the manifest's record and ``Extraction.embed``'s rule): equal to sentence-transformers'
``encode(prompt=...)`` with ``Pooling(include_prompt=True/False)`` on the embedded minilm; on the tiny models, a
prompt gives the numbers of the prompt written before each text, in pairs, windows and token outputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import hubembed
from hubembed import EmbedSpec, InputError, LoadOptions
from hubembed._pipeline import batching, prompts
from hubembed._pipeline.layers import Combine
from hubembed._pipeline.pooling import WindowPool
from hubembed._pipeline.run import _stitch, pool_text
from hubembed.cli import main
from hubembed.encoder import Encoder
from hubembed.errors import OutputError

QUERY, DOCUMENT = "the cat : ", "the dog : "  # words of the tiny models' vocabulary
NAMED = {"query": QUERY, "document": DOCUMENT}
TEXTS = ["hello world", "the dog sat on the mat.", "", "a quick brown fox jumps over the lazy dog"]
SPECIAL = {"start_of_sequence_id": 101, "end_of_segment_id": 102, "padding_id": 0}


@pytest.fixture(scope="module")
def tiny(tiny_encoders):
    return tiny_encoders["tf2_dict"]


@pytest.fixture(scope="module")
def prompted(tiny_models):
    """The tiny model with named prompts given to load."""
    return hubembed.load(tiny_models["tf2_dict"], prompts=NAMED)


def _pieces(enc, text):
    return len(enc.preprocessor.token_arrays([text])[0])


# -- the spec ------------------------------------------------------------------------------------------------------
def test_the_spec_holds_the_prompt_and_round_trips():
    spec = EmbedSpec(prompt="query: ", include_prompt=False)
    d = spec.to_dict()
    assert d["prompt"] == "query: " and d["prompt_name"] is None and d["include_prompt"] is False
    assert EmbedSpec.from_dict(json.loads(json.dumps(d))) == spec
    named = EmbedSpec(prompt_name="query")
    assert EmbedSpec.from_dict(named.to_dict()) == named
    # a dictionary written before prompts existed opens with no prompt
    old = {k: v for k, v in EmbedSpec().to_dict().items() if k not in ("prompt", "prompt_name", "include_prompt")}
    assert EmbedSpec.from_dict(old) == EmbedSpec() and EmbedSpec.from_dict(old).prompt is None
    assert EmbedSpec(prompt="") == EmbedSpec()  # an empty prompt is none, as sentence-transformers
    assert EmbedSpec(prompt="q: ") != EmbedSpec() and EmbedSpec(prompt="q: ").for_tokens().prompt == "q: "
    # a record holds a named prompt's text and name: the text is what was used
    rec = {"pooling": "mean", "prompt": "query: ", "prompt_name": "query", "prompts": {"query": "query: "}}
    assert EmbedSpec.from_dict(rec) == EmbedSpec(prompt="query: ")


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"prompt": 3}, "prompt=3: a string"),
        ({"prompt": b"query: "}, "prompt=b'query: ': a string"),
        ({"prompt_name": ""}, "prompt_name='': the name"),
        ({"prompt_name": ["query"]}, "prompt_name=\\['query'\\]"),
        ({"prompt": "q: ", "prompt_name": "query"}, "pass prompt= or prompt_name=, not both"),
        ({"include_prompt": "no"}, "include_prompt='no'; valid: True or False"),
        ({"include_prompt": False, "pooling": "cls"}, "pooling='cls' reads the \\[CLS\\] position"),
        ({"include_prompt": False, "pooling": "pooled"}, "pooling='pooled'"),
    ],
)
def test_bad_prompt_arguments_are_refused_when_the_spec_is_made(kw, match):
    with pytest.raises(InputError, match=match):
        EmbedSpec(**kw)


def test_named_prompts_in_load_options():
    o = LoadOptions("some/folder", prompts={"query": "q: ", "document": "d: "})
    assert o.prompts == (("query", "q: "), ("document", "d: ")) and hash(o) == hash(o.replace())  # a dict key
    assert LoadOptions.from_dict(json.loads(json.dumps(o.to_dict()))) == o
    with pytest.raises(InputError, match="prompts="):
        LoadOptions("x", prompts="query: ")
    with pytest.raises(InputError, match="non-empty names"):
        LoadOptions("x", prompts={"query": 3})
    o.check_prompt(EmbedSpec(prompt_name="document"))
    with pytest.raises(InputError, match="prompt_name='passage': some/folder has no prompt of that name"):
        o.check_prompt(EmbedSpec(prompt_name="passage"))
    with pytest.raises(InputError, match="its prompts: none"):  # all-MiniLM-L6-v2 defines none
        LoadOptions("minilm").check_prompt(EmbedSpec(prompt_name="query"))


def test_bad_prompts_are_refused_before_tensorflow_is_imported():
    code = (
        "import sys, hubembed\n"
        "from hubembed.cli import main\n"
        "for kw in ({'prompt': 3}, {'prompt': 'a', 'prompt_name': 'b'}):\n"
        "    try:\n"
        "        hubembed.EmbedSpec(**kw)\n"
        "    except hubembed.InputError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit('not refused')\n"
        "assert main(['embed', 'x', '--model', 'minilm', '--prompt-name', 'query']) == 1\n"
        "print('tensorflow' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "False"
    assert "--prompt-name='query': minilm has no prompt of that name" in r.stderr


# -- rows, windows, stitching, streaming -----------------------------------------------------------------------------
def test_every_row_and_window_holds_the_prompt_and_the_text_gets_the_room_left():
    prompt = np.array([7, 8, 9], np.int32)
    text = np.arange(1000, 1030, dtype=np.int32)
    rows, n_windows, _ = batching.make_rows([text, text[:4]], 12, prompt=prompt)
    size = 12 - 2 - 3
    assert n_windows[0] == len(batching.windows(30, size, size // 2)) > 1 and n_windows[1] == 1
    kept = []
    for r in rows:
        assert r.length <= 12 and r.head == 4 and r.prompt is prompt
        ids = batching.pack([r], SPECIAL, 12)[0][0]
        np.testing.assert_array_equal(ids[: r.length], np.concatenate([[101], prompt, r.ids, [102]]))
        if r.text == 0:
            kept.append(r.ids[r.keep[0] : r.keep[1]])
    np.testing.assert_array_equal(np.concatenate(kept), text)  # the keep ranges tile the text, never the prompt
    # truncation cuts the text, never the prompt; a pair's trimming likewise
    (row,), _, truncated = batching.make_rows([text], 12, long="truncate", prompt=prompt)
    assert len(row.ids) == size and truncated[0] == 30 - size
    (pair,), _, _ = batching.make_rows([text], 12, pairs=[text], prompt=prompt)
    assert pair.length == 12 and len(pair.ids) + len(pair.pair) == 12 - 3 - 3
    with pytest.raises(InputError, match="stride=7: the overlap of windows must be in 0..6 .* - 3 prompt pieces"):
        batching.make_rows([text], 12, stride=7, prompt=prompt)
    with pytest.raises(InputError, match="the prompt is 10 word pieces: .* no room for text"):
        batching.make_rows([text], 12, prompt=np.arange(10, dtype=np.int32))


def _window_parts(rng, text, prompt, seq_length, H=3, k=2):
    rows, _, _ = batching.make_rows([text], seq_length, prompt=prompt)
    parts = []
    for row in rows:
        ids, _, types, special = (a[0] for a in batching.pack([row], SPECIAL, seq_length))
        vec = rng.standard_normal((k, row.length, H)).astype(np.float32)
        parts.append((row, ids, special, types, vec, None, None))
    return rows, parts


@pytest.mark.parametrize("pooling", ["mean", "max", "mean_max", "mean_sqrt_len"])
@pytest.mark.parametrize("include_prompt", [True, False])
@pytest.mark.parametrize("special_tokens", [True, False])
def test_windows_stitch_the_first_windows_prompt_and_stream_alike(pooling, include_prompt, special_tokens):
    """A long text's windows each hold the prompt; stitched, the text is [CLS] prompt text [SEP] with the first
    window's [CLS] and prompt; pooling window by window (WindowPool, in any order) equals pooling that."""
    combine = Combine.make("mean", 2, None, 1.0)
    plan = type("Plan", (), {"combine": combine})()
    for seed in range(5):
        rng = np.random.default_rng(seed)
        prompt = rng.integers(5, 50, int(rng.integers(0, 4))).astype(np.int32)
        text = rng.integers(1000, 2000, int(rng.integers(20, 60))).astype(np.int32)
        rows, parts = _window_parts(rng, text, prompt, 12)
        tt = _stitch(list(parts), 0)
        np.testing.assert_array_equal(tt.ids, np.concatenate([[101], prompt, text, [102]]))
        assert tt.prompt == len(prompt) and tt.head == 1 + len(prompt)
        np.testing.assert_array_equal(tt.vectors[:, : tt.head], parts[0][4][:, : tt.head])  # the first window's
        stream = WindowPool(combine, pooling, special_tokens, len(rows), include_prompt)
        for i in rng.permutation(len(parts)):
            stream.add(parts[i][0], parts[i][4], None, None)
        ref = pool_text(tt, plan, pooling, special_tokens, include_prompt)
        np.testing.assert_allclose(stream.result(), ref, atol=2e-5, rtol=2e-5)
        # include_prompt=False: [CLS] and the prompt leave the pooling, as sentence-transformers' prompt_length
        x = combine.apply(tt.vectors)
        keep = np.ones(len(tt.ids), bool)
        keep[: tt.head] = include_prompt
        keep[[0, -1]] &= special_tokens
        if pooling == "mean":
            np.testing.assert_allclose(ref, x[keep].mean(0), atol=1e-5)


# -- the tiny models: a prompt is the prompt written before each text ------------------------------------------------
@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "weightedmean", "pooled"])
def test_a_prompt_equals_writing_it_before_each_text(tiny, pooling):
    got = tiny.embed(TEXTS, prompt=QUERY, pooling=pooling)
    np.testing.assert_allclose(got, tiny.embed([QUERY + t for t in TEXTS], pooling=pooling), atol=1e-5)
    assert np.abs(got - tiny.embed(TEXTS, pooling=pooling)).max() > 1e-3
    pairs = [(t, "the mat") for t in TEXTS]
    np.testing.assert_allclose(
        tiny.embed(pairs, prompt=QUERY, pooling=pooling),
        tiny.embed([(QUERY + a, b) for a, b in pairs], pooling=pooling),
        atol=1e-5,
    )


@pytest.mark.parametrize("pooling", ["mean", "max", "weightedmean", "mean_sqrt_len"])
@pytest.mark.parametrize("special_tokens", [True, False])
def test_include_prompt_false_pools_without_cls_and_the_prompt(tiny, pooling, special_tokens):
    got = tiny.embed(TEXTS, prompt=QUERY, include_prompt=False, pooling=pooling, special_tokens=special_tokens)
    out = tiny.encode([QUERY + t for t in TEXTS])
    start = 1 + _pieces(tiny, QUERY)  # sentence-transformers' prompt_length: [CLS] and the prompt's pieces
    for i in range(len(TEXTS)):
        n = int(out.mask[i].sum())
        x = out.sequence[i, :n]
        pos = np.arange(1, n + 1, dtype=np.float32)  # weightedmean: positions keep their weights
        keep = np.arange(n) >= start
        keep[n - 1] &= special_tokens
        if pooling == "max":
            ref = x[keep].max(0) if keep.any() else np.zeros(x.shape[1])
        elif pooling == "weightedmean":
            ref = (x[keep] * pos[keep, None]).sum(0) / max(pos[keep].sum(), 1e-9)
        elif pooling == "mean_sqrt_len":
            ref = x[keep].sum(0) / np.sqrt(max(keep.sum(), 1))
        else:
            ref = x[keep].sum(0) / max(keep.sum(), 1)
        np.testing.assert_allclose(got[i], ref, atol=1e-5, err_msg=f"{pooling} {TEXTS[i]!r}")
    # without a prompt, include_prompt=False changes nothing (as sentence-transformers)
    np.testing.assert_array_equal(
        tiny.embed(TEXTS, include_prompt=False, pooling=pooling), tiny.embed(TEXTS, pooling=pooling)
    )


def test_long_texts_have_the_prompt_in_every_window(tiny_models):
    enc = hubembed.load(tiny_models["tf2_dict"], seq_length=12)
    first = "the cat sat on the mat ."  # 7 pieces: the room a 3-piece prompt leaves in a window of 12
    long_text = " ".join([first] * 6)
    assert _pieces(enc, QUERY) == 3 and _pieces(enc, first) == 7
    vec, info = enc.embed([long_text], prompt=QUERY, pooling="cls", return_info=True)
    assert info.n_windows[0] == len(batching.windows(_pieces(enc, long_text), 7, 3)) > 1
    # [CLS] of the first window, which holds the prompt and the first 7 pieces
    np.testing.assert_allclose(vec, enc.embed([QUERY + first], pooling="cls"), atol=1e-5)
    # truncation keeps the prompt and cuts the text
    cut, info = enc.embed([long_text], prompt=QUERY, long="truncate", return_info=True)
    np.testing.assert_allclose(cut, enc.embed([QUERY + first]), atol=1e-5)
    assert info.truncated[0] == _pieces(enc, long_text) - 7
    with pytest.raises(InputError, match="stride=7: .* - 3 prompt pieces"):
        enc.embed([long_text], prompt=QUERY, stride=7)


def test_token_and_word_outputs_are_the_texts_own_with_the_prompt_as_context(tiny):
    texts = ["hello world", "the café sat"]
    plain = tiny.embed_tokens(texts)
    got = tiny.embed_tokens(texts, prompt=QUERY)
    joined = tiny.embed_tokens([QUERY + t for t in texts])
    P = _pieces(tiny, QUERY)
    for t, g, p, j in zip(texts, got, plain, joined):
        assert g.text == t and g.tokens == p.tokens
        np.testing.assert_array_equal(g.spans, p.spans)  # into the text as given, not the prompt
        assert [t[s:e] for s, e in g.spans] == [t[s:e] for s, e in p.spans]
        np.testing.assert_allclose(g.vectors, j.vectors[P:], atol=1e-5)  # the prompt's context
        np.testing.assert_array_equal(j.spans[P:] - len(QUERY), g.spans)
        assert np.abs(g.vectors - p.vectors).max() > 1e-3
    words = tiny.embed_words(texts, prompt=QUERY)
    assert [w.words for w in words] == [w.words for w in tiny.embed_words(texts)]
    np.testing.assert_allclose(words[0].vectors, got[0].vectors, atol=1e-6)  # one piece a word: "hello", "world"


# -- named prompts, embed_queries / embed_documents -----------------------------------------------------------------
def test_named_prompts_and_embed_queries_and_documents(prompted, tiny):
    assert prompted.prompts == NAMED and tiny.prompts == {}
    q = prompted.embed(TEXTS, prompt=QUERY)
    np.testing.assert_array_equal(prompted.embed(TEXTS, prompt_name="query"), q)
    np.testing.assert_array_equal(prompted.embed_queries(TEXTS), q)
    np.testing.assert_array_equal(prompted.embed_documents(TEXTS), prompted.embed(TEXTS, prompt=DOCUMENT))
    # a prompt given wins; keywords and spec= pass through
    np.testing.assert_array_equal(
        prompted.embed_queries(TEXTS, prompt="hello : "), prompted.embed(TEXTS, prompt="hello : ")
    )
    spec = EmbedSpec(pooling="max", include_prompt=False)
    np.testing.assert_array_equal(
        prompted.embed_documents(TEXTS, spec=spec), prompted.embed(TEXTS, spec=spec.replace(prompt=DOCUMENT))
    )
    # a model without the prompts embeds the texts as they are
    np.testing.assert_array_equal(tiny.embed_queries(TEXTS), tiny.embed(TEXTS))
    np.testing.assert_array_equal(tiny.embed_documents(TEXTS, pooling="cls"), tiny.embed(TEXTS, pooling="cls"))
    with pytest.raises(InputError, match="prompt_name='query': .* has no prompt of that name .*its prompts: none"):
        tiny.embed(TEXTS, prompt_name="query")
    with pytest.raises(InputError, match="its prompts: 'query', 'document'"):
        prompted.embed_tokens(TEXTS, prompt_name="passage")


def test_embed_documents_takes_a_passage_prompt_as_sentence_transformers(tiny):
    enc = Encoder(
        tiny.engine, tiny.preprocessor, tiny.seq_length, options=tiny.options.replace(prompts={"passage": DOCUMENT})
    )
    np.testing.assert_array_equal(enc.embed_documents(TEXTS), tiny.embed(TEXTS, prompt=DOCUMENT))
    np.testing.assert_array_equal(enc.embed_queries(TEXTS), tiny.embed(TEXTS))


def test_embed_dataset_takes_the_prompt(prompted):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(TEXTS)
    got = np.stack(list(prompted.embed_dataset(ds, batch_size=2, prompt_name="document", include_prompt=False)))
    np.testing.assert_allclose(got, prompted.embed(TEXTS, prompt=DOCUMENT, include_prompt=False), atol=1e-5)


def test_info_and_export_say_what_a_prompt_did(prompted, tmp_path):
    _, info = prompted.embed(TEXTS, prompt_name="document", include_prompt=False, return_info=True)
    assert info.spec["prompt"] == DOCUMENT and info.spec["prompt_name"] == "document"
    assert info.spec["prompts"] == NAMED and info.spec["include_prompt"] is False
    _, plain = prompted.embed(TEXTS, return_info=True)
    assert not {"prompt", "prompt_name", "prompts", "include_prompt"} & set(plain.spec)  # older records as they were
    with pytest.raises(InputError, match="an export embeds the strings it is given, with no prompt"):
        prompted.export(str(tmp_path / "exp"), prompt=QUERY)


# -- corpora: the manifest records the prompt; queries are embedded by the rule ------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompt-corpus") / "corpus.txt"
    path.write_text("\n".join(["hello world", "the dog sat on the mat .", "a quick brown fox", "good film"]) + "\n")
    return str(path)


def test_a_corpus_with_the_document_prompt_gets_queries_with_the_query_prompt(prompted, corpus, tmp_path):
    out = str(tmp_path / "docs")
    hubembed.extract(corpus, out, encoder=prompted, prompt_name="document", cache=False, quiet=True)
    ex = hubembed.open_extraction(out)
    assert ex.record["prompt"] == DOCUMENT and ex.record["prompt_name"] == "document"
    assert ex.record["prompts"] == NAMED
    assert ex.spec.prompt == DOCUMENT and ex.spec.prompt_name is None  # the text the corpus was embedded with
    texts = open(corpus, encoding="utf-8").read().split("\n")[:4]
    np.testing.assert_allclose(ex.vectors(), prompted.embed_documents(texts), atol=1e-5)
    np.testing.assert_allclose(prompted.embed(texts, spec=ex.spec), ex.vectors(), atol=1e-5)
    queries = ["a cat", "the lazy dog"]
    want = prompted.embed_queries(queries)
    np.testing.assert_allclose(ex.embed(queries, encoder=prompted), want, atol=1e-6)
    np.testing.assert_allclose(ex.embed(queries), want, atol=1e-6)  # the manifest's model, with its prompts
    np.testing.assert_allclose(ex.embed(queries, prompt="hello : "), prompted.embed(queries, prompt="hello : "))
    # a resume with another prompt is refused, naming it
    with pytest.raises(OutputError, match="spec.prompt"):
        hubembed.extract(corpus, out, encoder=prompted, prompt_name="query", cache=False, quiet=True, resume=True)


def test_a_corpus_with_a_prompt_string_gets_queries_with_the_same_prompt(tiny, corpus, tmp_path):
    out = str(tmp_path / "raw")
    hubembed.extract(corpus, out, encoder=tiny, prompt="hello : ", include_prompt=False, cache=False, quiet=True)
    ex = hubembed.open_extraction(out)
    assert ex.record["prompt"] == "hello : " and "prompt_name" not in ex.record
    assert (ex.spec.prompt, ex.spec.prompt_name, ex.spec.include_prompt) == ("hello : ", None, False)
    queries = ["a cat"]
    np.testing.assert_allclose(
        ex.embed(queries, encoder=tiny), tiny.embed(queries, prompt="hello : ", include_prompt=False), atol=1e-6
    )
    # prompt= overrides it; include_prompt stays the corpus's
    np.testing.assert_allclose(
        ex.embed(queries, encoder=tiny, prompt=QUERY), tiny.embed(queries, prompt=QUERY, include_prompt=False)
    )


def test_the_feature_cache_keys_on_the_prompt(tiny, corpus, tmp_path):
    cache = str(tmp_path / "cache")
    hubembed.extract(corpus, str(tmp_path / "a"), encoder=tiny, cache=cache, quiet=True)
    m = hubembed.extract(corpus, str(tmp_path / "b"), encoder=tiny, cache=cache, quiet=True, prompt=QUERY)
    assert m["summary"]["texts_from_cache_this_run"] == 0
    a, b = hubembed.open_extraction(str(tmp_path / "a")), hubembed.open_extraction(str(tmp_path / "b"))
    assert np.abs(a.vectors() - b.vectors()).max() > 1e-3
    m = hubembed.extract(corpus, str(tmp_path / "c"), encoder=tiny, cache=cache, quiet=True, prompt=QUERY)
    assert m["summary"]["texts_from_cache_this_run"] == 4


def test_token_extraction_takes_the_prompt_and_refuses_include_prompt(tiny, corpus, tmp_path):
    out = str(tmp_path / "tokens")
    hubembed.extract(corpus, out, encoder=tiny, level="tokens", prompt=QUERY, quiet=True)
    ex = hubembed.open_extraction(out)
    assert ex.record["prompt"] == QUERY
    row, ref = ex[0], tiny.embed_tokens(["hello world"], prompt=QUERY)[0]
    assert row.text == "hello world" and list(row.pieces) == ref.tokens
    np.testing.assert_allclose(np.asarray(row.vectors), ref.vectors, atol=1e-6)
    with pytest.raises(InputError, match="include_prompt=False: sentence vectors only"):
        hubembed.extract(
            corpus, str(tmp_path / "t2"), model="minilm", level="tokens", prompt=QUERY, include_prompt=False
        )


@pytest.mark.slow
def test_the_cli_takes_the_prompt(tiny_models, tiny, capsys, tmp_path):
    args = ["embed", *TEXTS[:2], "--model", tiny_models["tf2_dict"], "--prompt", QUERY, "--no-include-prompt"]
    assert main([*args, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["spec"]["prompt"] == QUERY and d["spec"]["include_prompt"] is False
    np.testing.assert_allclose(d["vectors"], tiny.embed(TEXTS[:2], prompt=QUERY, include_prompt=False), atol=1e-5)
    assert main(["embed", "x", "--model", tiny_models["tf2_dict"], "--prompt-name", "query"]) == 1
    assert "--prompt-name='query'" in capsys.readouterr().err
    assert main(["embed", "x", "--prompt", "a", "--prompt-name", "b"]) == 1
    assert "pass --prompt= or --prompt-name=, not both" in capsys.readouterr().err
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n", encoding="utf-8")
    out = str(tmp_path / "out")
    assert main(["extract", str(corpus), "-o", out, "--model", tiny_models["tf2_dict"], "--prompt", QUERY, "-q"]) == 0
    np.testing.assert_allclose(
        hubembed.open_extraction(out).vectors(), tiny.embed(["hello world"], prompt=QUERY), atol=1e-5
    )


@pytest.mark.slow
def test_beam_and_spark_carry_the_prompt(tiny_models, prompted):
    beam = pytest.importorskip("hubembed.beam")
    pytest.importorskip("apache_beam")
    handler = beam.ModelHandler(tiny_models["tf2_dict"], prompts=NAMED, prompt_name="query", include_prompt=False)
    assert handler.options.prompts == tuple(NAMED.items())
    results = handler.run_inference(TEXTS, handler.load_model())
    np.testing.assert_allclose(
        np.stack([r.inference for r in results]), prompted.embed_queries(TEXTS, include_prompt=False), atol=1e-6
    )
    spark = pytest.importorskip("hubembed.spark")
    pd = pytest.importorskip("pandas")
    load = spark._load_options(tiny_models["tf2_dict"], prompts=NAMED)
    job = spark._job(load, EmbedSpec(prompt_name="document"), 8, None)
    cells = spark._vectors(job, pd.Series(TEXTS))
    np.testing.assert_allclose(np.stack(cells), prompted.embed_documents(TEXTS), atol=1e-6)


def test_the_rule_for_queries():
    spec = EmbedSpec(prompt="d: ", include_prompt=False)
    rec = {"prompt": "d: ", "prompt_name": "document", "prompts": {"query": "q: ", "document": "d: "}}
    assert prompts.query_spec(spec, rec) == EmbedSpec(prompt="q: ", include_prompt=False)
    assert prompts.query_spec(spec, {**rec, "prompt_name": "passage"}).prompt == "q: "
    assert prompts.query_spec(spec, {**rec, "prompts": {"document": "d: "}}).prompt is None  # no query prompt
    assert prompts.query_spec(spec, {**rec, "prompt_name": "clustering"}) == spec  # a symmetric task: the same
    assert prompts.query_spec(spec, {"prompt": "d: "}) == spec  # a prompt string: the same
    assert prompts.query_spec(spec, rec, prompt_name="query").prompt_name == "query"
    assert prompts.query_spec(EmbedSpec(), {}) == EmbedSpec()


# -- parity with sentence-transformers on the embedded minilm --------------------------------------------------------
PARITY_TEXTS = [
    "A man is playing a guitar.",
    "Hi",
    "The quick brown fox jumps over the lazy dog, while the café's naïve owner serves crème brûlée.",
    "東京は日本の首都です。 Emoji 😀 and numbers 3.14159",
    " ".join(["A much longer text that goes on and on"] * 40),  # > 256 pieces: truncated, the prompt kept
    "",
]
PARITY_PROMPTS = ["query: ", "Represent this sentence for searching relevant passages: ", "query:"]


@pytest.fixture(scope="module")
def st_model(minilm_source):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    st = SentenceTransformer(minilm_source, device="cpu")
    return {
        mode: SentenceTransformer(modules=[st[0], Pooling(384, pooling_mode=mode)], device="cpu")
        for mode in ("mean", "max", "weightedmean", "mean_sqrt_len_tokens")
    }


OURS = {"mean": "mean", "max": "max", "weightedmean": "weightedmean", "mean_sqrt_len_tokens": "mean_sqrt_len"}


@pytest.mark.slow
@pytest.mark.parametrize("prompt", PARITY_PROMPTS)
@pytest.mark.parametrize("include_prompt", [True, False])
def test_prompts_equal_sentence_transformers_on_minilm(minilm, st_model, prompt, include_prompt):
    worst = {}
    for mode, model in st_model.items():
        model[1].include_prompt = include_prompt
        try:
            ref = model.encode(PARITY_TEXTS, prompt=prompt, batch_size=4, convert_to_numpy=True)
        finally:
            model[1].include_prompt = True
        ours = minilm.embed(
            PARITY_TEXTS, prompt=prompt, include_prompt=include_prompt, pooling=OURS[mode], long="truncate"
        )
        worst[mode] = float(np.abs(ours - ref).max())
    print(f"prompt {prompt!r} include_prompt={include_prompt}: max |ours - sentence-transformers| {worst}")
    assert max(worst.values()) <= 1e-5, worst
