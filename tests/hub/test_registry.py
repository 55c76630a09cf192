import re

import pytest

from hubembed import registry
from hubembed.errors import UnknownModelError

# hub-formats.md section 3, encoder column: every one must be in the registry.
TABLE = [
    "tensorflow/bert_en_uncased_L-12_H-768_A-12/4",
    "tensorflow/bert_en_uncased_L-24_H-1024_A-16/4",
    "tensorflow/bert_en_wwm_uncased_L-24_H-1024_A-16/4",
    "google/electra_small/2",
    "google/electra_base/2",
    "google/electra_large/2",
    "google/experts/bert/pubmed/2",
    "google/experts/bert/wiki_books/2",
    "tensorflow/talkheads_ggelu_bert_en_base/2",
    "tensorflow/talkheads_ggelu_bert_en_large/2",
    "tensorflow/lambert_en_uncased_L-24_H-1024_A-16/2",
    "tensorflow/mobilebert_en_uncased_L-24_H-128_B-512_A-4_F-4_OPT/1",
    "google/tn_bert/1",
    "tensorflow/bert_en_cased_L-12_H-768_A-12/4",
    "tensorflow/bert_en_cased_L-24_H-1024_A-16/4",
    "tensorflow/bert_en_wwm_cased_L-24_H-1024_A-16/4",
    "tensorflow/bert_multi_cased_L-12_H-768_A-12/4",
    "tensorflow/mobilebert_multi_cased_L-24_H-128_B-512_A-4_F-4_OPT/1",
    "tensorflow/bert_zh_L-12_H-768_A-12/4",
    "tensorflow/albert_en_base/3",
    "tensorflow/albert_en_large/3",
    "tensorflow/albert_en_xlarge/3",
    "tensorflow/albert_en_xxlarge/3",
    "google/MuRIL/1",
    "google/MuRIL-Large/1",
    "google/LaBSE/2",
] + [
    f"tensorflow/small_bert/bert_en_uncased_L-{L}_H-{H}_A-{A}/2"
    for L in (2, 4, 6, 8, 10, 12)
    for H, A in ((128, 2), (256, 4), (512, 8), (768, 12))
]


@pytest.mark.parametrize("handle", TABLE)
def test_every_table_encoder_is_registered_with_its_preprocessor(handle):
    entry = registry.find(f"https://tfhub.dev/{handle}")
    assert entry is not None and entry.kind == "encoder"
    assert entry.version == int(handle.rsplit("/", 1)[1])
    pre = registry.get(entry.preprocess)
    assert pre.kind == "preprocessor"
    assert entry.casing == pre.casing
    m = re.search(r"L-(\d+)_H-(\d+)", handle)
    if m and "mobilebert" not in handle:
        assert (entry.layers, entry.hidden_size) == (int(m.group(1)), int(m.group(2)))


def test_pairings_follow_the_table():
    assert registry.find("https://tfhub.dev/google/LaBSE/2").preprocess == "multilingual-preprocess"
    assert registry.find("https://tfhub.dev/tensorflow/albert_en_base/3").preprocess == "albert_en_preprocess"
    assert registry.find("https://tfhub.dev/google/MuRIL-Large/1").preprocess == "MuRIL_preprocess"
    assert (
        registry.find("https://tfhub.dev/tensorflow/bert_en_cased_L-12_H-768_A-12/4").preprocess
        == "bert_en_cased_preprocess"
    )
    assert (
        registry.get("bert_multi_cased_preprocess").handle
        == "https://tfhub.dev/tensorflow/bert_multi_cased_preprocess/3"
    )


def test_handles_match_with_any_version_and_trailing_slash():
    e = registry.find("https://tfhub.dev/tensorflow/bert_en_uncased_L-12_H-768_A-12/3/")
    assert e is not None and e.name == "bert_en_uncased_L-12_H-768_A-12"


def test_small_bert_names_do_not_collide_with_bert_base():
    a = registry.get("small_bert/bert_en_uncased_L-12_H-768_A-12")
    b = registry.get("bert_en_uncased_L-12_H-768_A-12")
    assert a.family == "small_bert" and b.family == "bert" and a.handle != b.handle


def test_embedded_default():
    e = registry.get(registry.default_name())
    assert e.name == "minilm" and e.embedded
    assert e.source["sha256"] == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    assert (e.layers, e.hidden_size, e.casing) == (6, 384, "uncased")


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownModelError) as err:
        registry.get("bert_en_uncased_L-12_H-768")
    msg = str(err.value)
    assert "'bert_en_uncased_L-12_H-768' is not a registry name" in msg
    assert "Did you mean: bert_en_uncased_L-12_H-768_A-12" in msg


def test_unknown_name_without_close_names_lists_what_works():
    with pytest.raises(UnknownModelError, match="tfhub.dev handle") as err:
        registry.get("zzzz")
    assert "Did you mean" not in str(err.value)
