"""SST-2 sentiment with hubembed.keras.HubFeatureLayer: a frozen encoder + small head, and the top layers fine-tuned.

    python examples/sst2_keras.py [--mode frozen|finetune|both] [--epochs 3] [--train-size 0]

Data: ../shared/data/sst2/{train,dev}.tsv (sentence<TAB>label). Keras 3 (tf.keras); the same code runs
with tf_keras through hubembed.keras.legacy. Prints dev accuracy per epoch and the time taken.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "sst2")


def read(split, n=0):
    texts, labels = [], []
    with open(os.path.join(DATA, f"{split}.tsv"), encoding="utf-8") as f:
        for line in f:
            text, label = line.rstrip("\n").rsplit("\t", 1)
            texts.append(text)
            labels.append(int(label))
    if n:
        texts, labels = texts[:n], labels[:n]
    return np.array(texts, dtype=object), np.array(labels)


def dataset(texts, labels, batch, shuffle=False):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((texts, labels))
    if shuffle:
        ds = ds.shuffle(len(texts), seed=0, reshuffle_each_iteration=True)
    return ds.batch(batch).prefetch(2)


def frozen_model(keras, HubFeatureLayer, model_handle):
    """Frozen minilm, mean pooling, a small MLP head."""
    return keras.Sequential(
        [
            keras.Input(shape=(), dtype="string"),
            HubFeatureLayer(model_handle, output="embedding", pooling="mean"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(2),
        ]
    )


def finetune_model(keras, HubFeatureLayer, model_handle, top):
    """Everything but the top `top` blocks frozen; the rest fine-tuned with a linear head."""
    import hubembed

    L = hubembed.inspect(model_handle).num_layers
    inp = keras.Input(shape=(), dtype="string")
    x = HubFeatureLayer(model_handle, pooling="mean", trainable=True, frozen_layers=L - top)(inp)
    return keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dropout(0.1)(x)))


def run(name, model, keras, train, dev, epochs, lr, batch):
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    t = time.perf_counter()
    hist = model.fit(dataset(*train, batch, shuffle=True), validation_data=dataset(*dev, 64), epochs=epochs, verbose=2)
    accs = hist.history["val_accuracy"]
    print(
        f"{name}: dev accuracy per epoch {[round(100 * a, 2) for a in accs]}; "
        f"{len(train[0])} training sentences, {time.perf_counter() - t:.0f} s"
    )
    return accs


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="both", choices=("frozen", "finetune", "both"))
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=0, help="first N training sentences (0: all)")
    ap.add_argument("--top", type=int, default=2, help="blocks fine-tuned in --mode finetune")
    args = ap.parse_args(argv)

    import keras
    import tensorflow as tf

    import hubembed
    from hubembed.keras import HubFeatureLayer

    tf.keras.utils.set_random_seed(0)
    train, dev = read("train", args.train_size), read("dev")
    print(
        f"# hubembed {hubembed.__version__}, tensorflow {tf.__version__}, keras {keras.__version__}; "
        f"SST-2 train {len(train[0])}, dev {len(dev[0])}; model {args.model}"
    )
    if args.mode in ("frozen", "both"):
        run(
            "frozen encoder + MLP head",
            frozen_model(keras, HubFeatureLayer, args.model),
            keras,
            train,
            dev,
            args.epochs,
            1e-3,
            32,
        )
    if args.mode in ("finetune", "both"):
        run(
            f"top {args.top} blocks fine-tuned",
            finetune_model(keras, HubFeatureLayer, args.model, args.top),
            keras,
            train,
            dev,
            args.epochs,
            1e-4,
            32,
        )


if __name__ == "__main__":
    main()
