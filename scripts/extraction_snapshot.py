"""Fingerprint tiny-model extractions: manifests (minus versions and timings) and shard sha256s, as JSON.

    python scripts/extraction_snapshot.py MODELS_DIR OUT.json

Builds the tiny test models into MODELS_DIR once (reused if there), runs a fixed set of extractions (every
level, format, a layer mix, a transformless spec, int8 where LiteRT is installed) and writes what they produced.
Two checkouts of hubembed that should not differ in behaviour give the same file (on the same machine).
"""

import glob
import hashlib
import json
import os
import random
import sys
import tempfile

import hubembed
from hubembed import testing

JOBS = {
    "sentence-npy": dict(pooling="mean"),
    "sentence-mix": dict(layers="-2:", combine="scalar_mix", weights=[1, 2], pooling="mean_max", normalize=True),
    "sentence-cls-parquet": dict(pooling="cls", format="parquet"),
    "sentence-tfrecord": dict(format="tfrecord", layers=[0, 2], combine="concat"),
    "sentence-f16-binary": dict(dtype="float16", pooling="max"),
    "tokens-parquet": dict(level="tokens", layers="all", combine="mean"),
    "words-tfrecord": dict(level="words", format="tfrecord", subword="mean"),
    "sentence-int8": dict(quantize="int8", pooling="mean", normalize=True),
}
DROP = ("versions", "seconds_this_run", "rows_per_second_this_run", "path")


def _scrub(x):
    if isinstance(x, dict):
        return {k: _scrub(v) for k, v in x.items() if k not in DROP}
    if isinstance(x, list):
        return [_scrub(v) for v in x]
    return x


def _corpus(path: str, n: int = 300) -> None:
    rng = random.Random(0)
    words = "the quick brown fox jumps over lazy dog good movie great film naïve café 日本 hello".split()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(("" if i % 29 == 3 else " ".join(rng.choice(words) for _ in range(rng.randint(1, 90)))) + "\n")


def main(models_dir: str, out_json: str) -> None:
    if not os.path.isdir(models_dir):
        testing.build_all(models_dir)
    model = os.path.join(models_dir, "tf2_dict")
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HUBEMBED_CACHE"] = os.path.join(tmp, "cache")
        src = os.path.join(tmp, "c.txt")
        _corpus(src)
        for name, kw in JOBS.items():
            out = os.path.join(tmp, name)
            m = hubembed.extract(src, out, model=model, shard_size=64, quiet=True, cache=False, **kw)
            m["header"]["model"] = "MODEL"
            shards = {}
            for f in sorted(glob.glob(os.path.join(out, "part-*"))):
                with open(f, "rb") as fh:
                    shards[os.path.basename(f)] = hashlib.sha256(fh.read()).hexdigest()
            result[name] = {"manifest": _scrub(m), "shards": shards}
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    print(f"{len(result)} extractions -> {out_json}")


if __name__ == "__main__":
    main(*sys.argv[1:])
