"""The Model Garden fallback: a Hub BERT rebuilt as an ``official.nlp.modeling`` encoder from its own weights.

A Hub encoder exports what its authors chose: list-style v1/v2 encoders and TF1
modules give only the last layer; none gives the embedding output, attention
probabilities or sub-layer outputs, and every call runs all blocks. This module
reads the Hub model's variables, maps their names to Model Garden's (the export
names of ``export_tfhub_lib``, which ``hubembed convert`` also writes, or the TF1
BERT names ``bert/encoder/layer_i/...``), reads the configuration off their
shapes, builds Model Garden's ``BertEncoderV2`` (or ``AlbertEncoder``), assigns
the weights and checks the rebuild against the Hub model's own outputs on a probe
batch: it refuses, with the measured difference, when they disagree.

What the rebuild gives (``GardenEncoder.forward``), numbered as everywhere else
(blocks 0..L-1; ``"embeddings"`` is the embedding layer's output, after its layer
norm and, for ALBERT, the projection to the hidden width):

* every layer, and only the blocks needed (early exit: ``upto=k`` runs k+1 blocks);
* attention probabilities per layer ``[B, heads, S, S]`` (rows sum to 1 over
  unmasked keys; padded keys get 0);
* sub-layer outputs per layer (``SUBLAYERS``): the self-attention output before
  the residual (``attention_output``), after residual + layer norm
  (``attention_normed``), the feed-forward intermediate activation
  (``intermediate``, ``[B, S, I]``) and the feed-forward output before its
  residual (``ffn_output``).

Per-layer freezing (``freeze``, by one rule: ``block_group`` + ``is_frozen``, which the
Keras layer's freezing uses too) and a gradual-unfreezing schedule
(``unfreezing_schedule``) serve fine-tuning (``hubembed.keras``).

The activation is read off the SavedModel's graph and named as everywhere in hubembed
(``hubembed._formats.names.ACTIVATIONS``): ``Erf``: "gelu", the exact GELU, as Hugging
Face's; ``Tanh`` + ``Pow``: "gelu_tanh", the tanh approximation (Model Garden's and the
original BERT's "gelu"); ``Relu``: "relu"); the TF1 BERT names do not carry the number of
attention heads, which comes from the registry, the handle (``_A-12``) or the
probe. Model Garden (``tf-models-official``) is an optional extra.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Collection, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from hubembed._formats.forward import bert_forward
from hubembed._formats.names import ACTIVATIONS, BertConfig, tf1_name, weight_shapes
from hubembed._pipeline.backends import Activations, HubBackend
from hubembed._util import optional, quiet_per_plan_tracing
from hubembed.errors import FormatError, InputError

log = logging.getLogger("hubembed")

FAMILIES = ("bert", "albert")
SUBLAYERS = ("attention_output", "attention_normed", "intermediate", "ffn_output")
# Largest |garden - hub| accepted on the probe batch, relative to max(1, max |hub|).
TOLERANCE = 1e-4


def require() -> tuple:
    """Import Model Garden's NLP modeling library, or say how to install it."""
    modeling = optional(
        "official.nlp.modeling",
        "The Model Garden fallback (layers a Hub model does not export, "
        "the embedding output, attention, sub-layer outputs, early exit, per-layer freezing)",
    )
    from official.nlp.modeling import layers, networks  # noqa: F401 (modeling imported them)

    return modeling.layers, modeling.networks


# ---------------------------------------------------------------------------
# Weights: Hub variables -> Model Garden names
# ---------------------------------------------------------------------------

_MG = re.compile(
    r"(?:^|/)(word_embeddings/embeddings|position_embedding/embeddings|type_embeddings/embeddings"
    r"|embeddings/layer_norm/(?:gamma|beta)|embedding_projection/(?:kernel|bias)|pooler_transform/(?:kernel|bias)"
    r"|transformer/(?:layer_\d+/)?(?:self_attention/(?:query|key|value|attention_output)/(?:kernel|bias)"
    r"|(?:self_attention_layer_norm|output_layer_norm)/(?:gamma|beta)|(?:intermediate|output)/(?:kernel|bias)))$"
)
_TF1_BERT = re.compile(r"(?:^|/)(bert/(?:embeddings/.+|encoder/layer_\d+/.+|pooler/dense/(?:kernel|bias)))$")
_TF1_ALBERT = re.compile(r"(?:^|/)bert/encoder/(?:transformer/group_\d+|embedding_hidden_mapping_in)/")
# Names of families Model Garden has encoders for but this fallback does not rebuild.
_OTHER = (
    ("talking_heads", re.compile(r"pre_softmax_weight|post_softmax_weight")),
    ("mobilebert", re.compile(r"bottleneck|MobileBert|mobile_bert", re.I)),
)


@functools.lru_cache(maxsize=1)
def _tf1_table() -> Dict[str, str]:
    """TF1 BERT name (layer 0 as template) -> Model Garden name."""

    one = BertConfig(vocab_size=1, hidden_size=1, num_layers=1, num_heads=1, intermediate_size=1)
    return {tf1_name(n): n for n in weight_shapes(one)}


def garden_name(name: str) -> Optional[str]:
    """A Hub variable name -> its Model Garden export name, or None if it is not an encoder weight."""
    name = name.split(":")[0]
    m = _MG.search(name)
    if m:
        return m.group(1)
    m = _TF1_BERT.search(name)
    if m:
        tf1 = m.group(1)
        layer = re.search(r"/layer_(\d+)/", tf1)
        mg = _tf1_table().get(re.sub(r"/layer_\d+/", "/layer_0/", tf1))
        if mg is None:
            return None
        return mg.replace("layer_0/", f"layer_{layer.group(1)}/") if layer else mg
    return None


def family_of(names: Sequence[str], entry: Any = None) -> str:
    """'bert' or 'albert' from the variable names (and the registry); anything else is refused."""
    arch = getattr(entry, "architecture", None)
    if arch and arch not in FAMILIES:
        raise _unsupported(arch, getattr(entry, "name", "this encoder"))
    for fam, pat in _OTHER:
        if any(pat.search(n) for n in names):
            raise _unsupported(fam, "this encoder")
    if any(_TF1_ALBERT.search(n) for n in names):
        raise _unsupported(
            "albert (TF1 Hub module)",
            "this encoder",
            "ALBERT is rebuilt from the TF2 format (albert_en_*/3), not from TF1 modules",
        )
    mapped = [garden_name(n) for n in names]
    if any(m and m.startswith("transformer/self_attention/") for m in mapped):
        return "albert"
    if any(m and re.match(r"transformer/layer_\d+/", m) for m in mapped):
        return "bert"
    shown = ", ".join(list(names)[:6]) or "(no variables)"
    raise FormatError(
        f"the Model Garden fallback does not recognise this encoder's variables ({shown}, ...); "
        f"it rebuilds BERT-style and ALBERT encoders whose variables carry Model Garden export "
        f"names (transformer/layer_i/...) or TF1 BERT names (bert/encoder/layer_i/...)"
    )


def _unsupported(family: str, what: str, extra: str = "") -> FormatError:
    return FormatError(
        f"the Model Garden fallback cannot rebuild {what}: its family is {family}. Supported: BERT-style encoders "
        f"(BERT, Small BERT, ELECTRA, Experts, LaBSE, MuRIL, MiniLM and hubembed convert outputs) and ALBERT "
        f"(TF2 format){'; ' + extra if extra else ''}. Use the layers the Hub model exports"
    )


def hub_weights(obj: Any) -> Dict[str, np.ndarray]:
    """Model Garden name -> numpy value, for every encoder weight of a loaded Hub model."""
    out: Dict[str, np.ndarray] = {}
    for v in getattr(obj, "variables", None) or []:
        mg = garden_name(v.name)
        if mg is None:
            continue
        if mg in out:
            raise FormatError(f"two variables map to {mg} (one is {v.name}); cannot tell which the encoder uses")
        out[mg] = v.numpy()
    return out


# ---------------------------------------------------------------------------
# Configuration read off the shapes
# ---------------------------------------------------------------------------


@dataclass
class GardenConfig:
    family: str
    vocab_size: int
    hidden_size: int
    embedding_width: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    type_vocab_size: int
    activation: str
    has_pooler: bool
    checked: Dict[str, float] = field(default_factory=dict)  # probe: output -> max |diff|

    def to_dict(self) -> dict:
        return asdict(self)


def _block_prefix(family: str, i: int) -> str:
    return "transformer/" if family == "albert" else f"transformer/layer_{i}/"


def head_candidates(weights: Dict[str, np.ndarray], family: str, hints: Sequence[int] = ()) -> List[int]:
    """Possible numbers of attention heads: known from 3-D kernels, else hints, H/64, then divisors of H."""
    q = weights[_block_prefix(family, 0) + "self_attention/query/kernel"]
    if q.ndim == 3:
        return [int(q.shape[1])]
    H = int(q.shape[0])
    order = [h for h in hints if h and H % h == 0] + ([H // 64] if H % 64 == 0 else [])
    order += [n for n in range(1, H + 1) if H % n == 0]  # every head size: 64 (BERT), 32 (MiniLM), ...
    return list(dict.fromkeys(order))


def screen(
    weights: Dict[str, np.ndarray], family: str, pairs: Iterable[tuple], expected: Activations, probe: tuple
) -> list:
    """(heads, activation) pairs, the one the plain BERT computation says reproduces ``expected`` first.

    Each pair is tried with ``forward.bert_forward`` over the Hub weights on the probe batch (one block
    when the first layer's output is known, else all): milliseconds each, where a Model Garden build
    takes seconds. Encoders that computation does not cover (ALBERT, an embedding projection) keep
    the given order.
    """
    pairs = list(pairs)
    if family != "bert" or "embedding_projection/kernel" in weights:
        return pairs
    ids, mask, types = probe
    target = expected.layers[0] if expected.layers is not None else expected.sequence
    blocks = 1 if expected.layers is not None else len(_block_numbers(weights))
    m = mask.astype(bool)
    for heads, act in pairs:
        cfg = BertConfig(
            vocab_size=1,
            hidden_size=int(weights["word_embeddings/embeddings"].shape[1]),
            num_layers=blocks,
            num_heads=heads,
            intermediate_size=1,
            activation=act,
        )
        _, layers = bert_forward(weights, cfg, ids, mask, types)
        got, want = np.asarray(layers[-1])[m], np.asarray(target)[m]
        if np.abs(got - want).max() / max(1.0, float(np.abs(want).max())) <= TOLERANCE:
            return [(heads, act)] + [p for p in pairs if p != (heads, act)]
    return pairs


def _block_numbers(weights: Dict[str, np.ndarray]) -> set:
    """The i of every ``transformer/layer_i/`` among the weight names."""
    return {int(m.group(1)) for n in weights for m in [re.match(r"transformer/layer_(\d+)/", n)] if m}


def read_config(
    weights: Dict[str, np.ndarray], family: str, *, num_layers: Optional[int], num_heads: int, activation: str
) -> GardenConfig:
    V, E = weights["word_embeddings/embeddings"].shape
    p0 = _block_prefix(family, 0)
    H = int(weights[p0 + "self_attention/query/kernel"].shape[0])
    if family == "bert":
        found = _block_numbers(weights)
        if found != set(range(len(found))):
            raise FormatError(f"transformer blocks {sorted(found)} are not numbered 0..{len(found) - 1}")
        if num_layers is not None and num_layers != len(found):
            raise FormatError(f"the model reports {num_layers} layers but has weights for {len(found)} blocks")
        num_layers = len(found)
    elif not num_layers:
        raise FormatError(
            "an ALBERT encoder shares one block across its layers; the number of layers comes from "
            "its encoder_outputs or the registry, and neither says"
        )
    if (E != H) != ("embedding_projection/kernel" in weights):
        raise FormatError(
            f"embedding width {E} vs hidden size {H}: a projection is "
            f"{'missing' if E != H else 'present but unexpected'}"
        )
    return GardenConfig(
        family=family,
        vocab_size=int(V),
        hidden_size=H,
        embedding_width=int(E),
        num_layers=int(num_layers),
        num_heads=int(num_heads),
        intermediate_size=int(weights[p0 + "intermediate/kernel"].shape[1]),
        max_positions=int(weights["position_embedding/embeddings"].shape[0]),
        type_vocab_size=int(weights["type_embeddings/embeddings"].shape[0]),
        activation=activation,
        has_pooler="pooler_transform/kernel" in weights,
    )


def activation_candidates(ops: Collection[str]) -> List[str]:
    """The activations to try, most likely first, from the op types in the SavedModel's graph."""
    first = []
    if "Erf" in ops:
        first.append("gelu")
    if "Pow" in ops and "Tanh" in ops:
        first.append("gelu_tanh")
    if "Relu" in ops:
        first.append("relu")
    return list(dict.fromkeys(first + list(ACTIVATIONS)))


# ---------------------------------------------------------------------------
# Building the Model Garden encoder
# ---------------------------------------------------------------------------


def _activation(name: str) -> Callable:
    import tf_keras
    from official.modeling import tf_utils

    if name == "gelu":  # hubembed's (and Hugging Face's) "gelu": the exact one
        return tf_keras.activations.get("gelu")  # Keras' gelu: approximate=False (erf)
    if name == "gelu_tanh":
        return tf_utils.get_activation("gelu")  # Model Garden's gelu: the tanh approximation
    if name == "relu":
        return tf_keras.activations.get("relu")
    raise InputError(f"activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def _garden_shape(name: str, value: np.ndarray, cfg: GardenConfig) -> np.ndarray:
    """TF1 BERT keeps attention kernels 2-D and biases 1-D: reshape to Model Garden's per-head shapes."""
    N, H = cfg.num_heads, cfg.hidden_size
    D = H // N
    if "/self_attention/" not in name:
        return value
    if re.search(r"/(query|key|value)/kernel$", name):
        return value.reshape(H, N, D)
    if re.search(r"/(query|key|value)/bias$", name):
        return value.reshape(N, D)
    if name.endswith("attention_output/kernel"):
        return value.reshape(N, D, H)
    return value


def build_model(cfg: GardenConfig, weights: Dict[str, np.ndarray], policy: Optional[str] = None) -> Any:
    """A Model Garden encoder for ``cfg`` with ``weights`` assigned (every variable, by name).

    policy: a Keras mixed-precision policy ("mixed_bfloat16", "mixed_float16") to build it under:
    float32 variables, half-precision compute (Model Garden keeps layer norms and softmax in float32).
    Default: float32, whatever the global policy.
    """
    import tf_keras

    # Built under an explicit policy: a global mixed policy set by the user must not leak into the
    # float32 rebuild that is checked against the Hub model.
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(policy or "float32")
    try:
        return _build_model(cfg, weights)
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def _build_model(cfg: GardenConfig, weights: Dict[str, np.ndarray]) -> Any:
    import tensorflow as tf

    _, networks = require()
    act = _activation(cfg.activation)
    common = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        max_sequence_length=cfg.max_positions,
        type_vocab_size=cfg.type_vocab_size,
        embedding_width=cfg.embedding_width,
    )
    if cfg.family == "bert":
        model = networks.BertEncoderV2(
            inner_dim=cfg.intermediate_size, inner_activation=act, output_dropout=0.1, attention_dropout=0.1, **common
        )
    else:
        model = networks.AlbertEncoder(
            intermediate_size=cfg.intermediate_size,
            activation=act,
            dropout_rate=0.1,
            attention_dropout_rate=0.1,
            dict_outputs=True,
            **common,
        )
    dummy = tf.ones((1, 2), tf.int32)
    model({"input_word_ids": dummy, "input_mask": dummy, "input_type_ids": tf.zeros((1, 2), tf.int32)})
    assigned = set()
    for v in model.variables:
        mg = garden_name(v.name)
        if mg is None or mg not in weights:
            if mg == "pooler_transform/kernel" or mg == "pooler_transform/bias":
                continue  # no pooler in the Hub model: the rebuild gives no pooled output
            raise FormatError(f"the Hub model has no weight for Model Garden's {v.name}")
        value = _garden_shape(mg, weights[mg], cfg)
        if tuple(value.shape) != tuple(v.shape):
            raise FormatError(f"{mg}: Hub shape {value.shape} vs Model Garden {tuple(v.shape)}")
        v.assign(value)
        assigned.add(mg)
    unused = sorted(set(weights) - assigned)
    if unused:
        raise FormatError(f"Hub weights the rebuild does not use: {', '.join(unused[:5])}")
    return model


class _Parts:
    """The pieces of a Model Garden encoder a step-by-step forward needs (BertEncoderV2 or AlbertEncoder)."""

    def __init__(self, model: Any, cfg: GardenConfig) -> None:
        if cfg.family == "bert":
            self.word = model._embedding_layer
            self.position = model._position_embedding_layer
            self.type = model._type_embedding_layer
            self.norm = model._embedding_norm_layer
            self.projection = model._embedding_projection
            self.blocks = list(model._transformer_layers)
            self.pooler = model._pooler_layer
        else:
            get = model.get_layer
            self.word, self.position = get("word_embeddings"), get("position_embedding")
            self.type, self.norm = get("type_embeddings"), get("embeddings/layer_norm")
            self.projection = get("embedding_projection") if cfg.embedding_width != cfg.hidden_size else None
            self.blocks = [get("transformer")] * cfg.num_layers
            self.pooler = get("pooler_transform")
        for b in set(self.blocks):
            if b._norm_first:
                raise FormatError("a pre-layer-norm block: Hub BERT encoders are post-layer-norm")


def _block_steps(block: Any, x: Any, attention_mask: Any, want_sub: bool) -> tuple:
    """One post-layer-norm TransformerEncoderBlock, step by step (inference: no dropout).

    The same order of operations as ``TransformerEncoderBlock.call`` for norm_first=False
    (tests check the two agree); it exists to expose what ``call`` keeps inside.
    """
    import tensorflow as tf

    x = tf.cast(x, block.compute_dtype)  # what the block's own call does to its inputs (mixed precision)
    attn, probs = block._attention_layer(
        query=x, value=x, key=x, attention_mask=attention_mask, return_attention_scores=True
    )
    normed = block._attention_layer_norm(x + attn)
    inter = block._intermediate_activation_layer(block._intermediate_dense(normed))
    ffn = block._output_dense(inter)
    out = block._output_layer_norm(tf.cast(ffn, normed.dtype) + normed)  # as call: the layer norm is float32
    sub = {"attention_output": attn, "attention_normed": normed, "intermediate": inter, "ffn_output": ffn}
    return out, probs, (sub if want_sub else None)


class GardenEncoder:
    """A Hub encoder rebuilt with Model Garden: every layer, attention, sub-layers, early exit, freezing.

    ``model`` is the Model Garden Keras (tf_keras) encoder; its variables are the
    ones to train. ``forward`` runs inference step by step; ``__call__`` follows
    the backend protocol (``hubembed._pipeline.backends``).
    """

    def __init__(self, model: Any, cfg: GardenConfig, handle: str = "", policy: Optional[str] = None) -> None:
        self.model = model
        self.config = cfg
        self.handle = handle
        self.policy = policy
        self.parts = _Parts(model, cfg)
        self._fns: dict = {}

    def with_policy(self, policy: str) -> "GardenEncoder":
        """A copy built under a Keras mixed-precision policy (same weights, half-precision compute).

        Its difference from the float32 rebuild on the probe batch is measured and logged
        (``config.checked["mixed_precision"]``); outputs come in the policy's compute dtype.
        """
        import tensorflow as tf

        weights = {garden_name(v.name): v.numpy() for v in self.model.variables if garden_name(v.name)}
        cfg = GardenConfig(**{**self.config.to_dict(), "checked": dict(self.config.checked)})
        mixed = GardenEncoder(build_model(cfg, weights, policy), cfg, self.handle, policy)
        ids, mask, types = probe_batch(cfg.vocab_size, cfg.max_positions)
        a = self(ids, mask, types).sequence.numpy()
        b = tf.cast(mixed(ids, mask, types).sequence, tf.float32).numpy()
        m = mask.astype(bool)
        diff = float(np.abs(a[m] - b[m]).max() / max(1.0, float(np.abs(a[m]).max())))
        cfg.checked["mixed_precision"] = diff
        log.info(
            "%s rebuilt under %s: max |diff| vs float32 on the probe batch %.1e (relative)",
            self.handle,
            policy,
            diff,
        )
        return mixed

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    def __repr__(self) -> str:
        c = self.config
        return (
            f"GardenEncoder({self.handle!r}, family={c.family}, layers={c.num_layers}, hidden={c.hidden_size}, "
            f"heads={c.num_heads}, activation={c.activation}{', policy=' + self.policy if self.policy else ''})"
        )

    # -- inference ---------------------------------------------------------
    def _embed(self, ids: Any, mask: Any, types: Any) -> tuple:
        from official.nlp.modeling import layers

        p = self.parts
        w = p.word(ids)
        x = p.norm(w + p.position(w) + p.type(types))
        if p.projection is not None:
            x = p.projection(x)
        return x, layers.SelfAttentionMask()(x, mask)

    def _forward(
        self, ids: Any, mask: Any, types: Any, upto: int, attention: bool, sublayers: bool, pooled: bool
    ) -> dict:
        x, amask = self._embed(ids, mask, types)
        out = {"embeddings": x, "layers": [], "attention": [], "sublayers": {k: [] for k in SUBLAYERS}}
        for block in self.parts.blocks[: upto + 1]:
            if attention or sublayers:
                x, probs, sub = _block_steps(block, x, amask, sublayers)
                if attention:
                    out["attention"].append(probs)
                if sublayers:
                    for k in SUBLAYERS:
                        out["sublayers"][k].append(sub[k])
            else:
                x = block([x, amask], training=False)
            out["layers"].append(x)
        if pooled and self.config.has_pooler:
            out["pooled"] = self.parts.pooler(x[:, 0, :])
        return out

    def forward(
        self,
        ids: Any,
        mask: Any,
        types: Any,
        *,
        upto: Optional[int] = None,
        attention: bool = False,
        sublayers: bool = False,
    ) -> dict:
        """Run blocks 0..upto (default all; -1: the embeddings only) on int32 [B, S] inputs.

        Returns a dict of tensors: ``embeddings`` [B,S,H]; ``layers`` (upto+1 x [B,S,H]);
        ``attention`` (per layer [B,heads,S,S], if asked); ``sublayers`` (name -> per layer,
        if asked); ``pooled`` [B,H] when all blocks ran and the model has a pooler.
        """
        import tensorflow as tf

        L = self.num_layers
        upto = L - 1 if upto is None else int(upto)
        if not -1 <= upto < L:
            raise InputError(f"upto={upto}; valid: -1..{L - 1} (-1: the embedding output only)")
        key = (upto, bool(attention), bool(sublayers))
        fn = self._fns.get(key)
        if fn is None:
            quiet_per_plan_tracing()  # one function per plan, traced once: not "retracing"
            spec = tf.TensorSpec([None, None], tf.int32)

            @tf.function(input_signature=[spec, spec, spec])
            def fn(i: Any, m: Any, t: Any) -> dict:
                return self._forward(i, m, t, upto, attention, sublayers, pooled=upto == L - 1)

            self._fns[key] = fn
        return fn(
            tf.convert_to_tensor(ids, tf.int32),
            tf.convert_to_tensor(mask, tf.int32),
            tf.convert_to_tensor(types, tf.int32),
        )

    def __call__(self, ids: Any, mask: Any, types: Any, *, training: bool = False, plan: Any = None) -> Activations:
        """The ``Backend`` call (``hubembed._pipeline.backends``): the blocks ``plan`` needs (early exit; every
        block without a plan) as ``Activations``. ``training=True`` runs the whole Keras model in training mode
        (dropout; for fine-tuning) unless the plan needs attention probabilities or the embedding output, which
        only the block-by-block forward gives (without dropout; gradients still flow)."""

        upto = None if plan is None else plan.upto
        attention = plan is not None and plan.attention_layer is not None
        if training and not attention and (plan is None or "embeddings" not in plan.indices):
            out = self.model({"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}, training=True)
            return Activations(out["sequence_output"], out.get("pooled_output"), list(out["encoder_outputs"]))
        import tensorflow as tf

        if tf.inside_function():  # inside a graph (a Keras layer): inline the blocks
            upto = self.num_layers - 1 if upto is None else upto
            pooled = upto == self.num_layers - 1 or (plan is not None and plan.need_pooled)
            out = self._forward(ids, mask, types, upto, attention, False, pooled=pooled)
        else:
            out = self.forward(ids, mask, types, upto=upto, attention=attention)
        return Activations(
            out["layers"][-1] if out["layers"] else None,
            out.get("pooled"),
            out["layers"],
            out["embeddings"],
            out["attention"] or None,
        )

    # -- fine-tuning -------------------------------------------------------
    def freeze(self, n: int, *, embeddings: Optional[bool] = None) -> None:
        """Freeze blocks 0..n-1 and the embeddings (n=0: nothing frozen; n=L: everything but the pooler)."""
        freeze(self, n, embeddings=embeddings)


# A variable's freezing group: -1 the embeddings, i block i, "shared" ALBERT's one block, None what trains with the
# encoder whatever is frozen (the pooler; names hubembed does not know), "fixed" what never trains.
Group = Union[int, str, None]


def block_group(name: str, uses_pooler: bool = True) -> Group:
    """The freezing group of an encoder variable, by its name (a Hub model's, or the rebuild's).

    -1 the embeddings, i block i, ``"shared"`` ALBERT's shared block, None other (the pooler, and names hubembed
    does not know: they train with the encoder), ``"fixed"`` never trained: an MLM head (not used for features),
    and the pooler when the output does not use it (``uses_pooler=False``: no gradient reaches it, and Keras would
    warn about it at every step).
    """
    mg = garden_name(name)
    if mg is None:
        return "fixed" if re.search(r"(^|/)(mlm|cls/predictions)/", name) else None
    m = re.match(r"transformer/layer_(\d+)/", mg)
    if m:
        return int(m.group(1))
    if mg.startswith("transformer/"):
        return "shared"
    if mg.startswith("pooler_transform"):
        return None if uses_pooler else "fixed"
    return -1


def is_frozen(group: Group, n: int, num_layers: int, *, embeddings: Optional[bool] = None) -> bool:
    """Whether a variable of ``group`` (``block_group``) is frozen when the first ``n`` blocks are.

    embeddings: whether the embeddings are frozen (default: whenever n > 0). ALBERT's shared block is frozen
    only with all ``num_layers`` of its layers; ``"fixed"`` always, None never.
    """
    if group == "fixed":
        return True
    if group is None:
        return False
    if group == "shared":
        return n >= num_layers
    if group == -1:
        return n > 0 if embeddings is None else bool(embeddings)
    return group < n


def freeze(encoder: GardenEncoder, n: int, *, embeddings: Optional[bool] = None) -> None:
    """Freeze the first ``n`` blocks of a rebuilt encoder (and its embeddings); unfreeze the rest.

    embeddings: freeze the embedding layer too (default: whenever n > 0). The pooler is left trainable.
    Each Keras layer is frozen as its variables' group says (``block_group``, ``is_frozen``: the Keras layer's
    rule too).
    """
    L = encoder.num_layers
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= L:
        raise InputError(f"freeze {n!r} layers; valid: 0..{L} (the first n blocks, with the embeddings)")
    if encoder.config.family == "albert" and 0 < n < L:
        raise InputError(
            f"ALBERT shares one block across all its layers: it can be frozen whole (n=0 or n={L}), not block by block"
        )
    p = encoder.parts
    for layer in (p.word, p.position, p.type, p.norm, p.projection, *dict.fromkeys(p.blocks)):
        if layer is not None:
            layer.trainable = not is_frozen(_layer_group(layer), n, L, embeddings=embeddings)


def _layer_group(layer: Any) -> Group:
    """The freezing group of a Keras layer of the rebuild: its variables' (one group per layer)."""
    groups = {block_group(v.name) for v in layer.weights}
    if len(groups) != 1:
        raise FormatError(f"{layer.name}: variables of several freezing groups ({sorted(map(str, groups))})")
    return groups.pop()


def unfreezing_schedule(
    num_layers: int, epochs: int, *, start_frozen: Optional[int] = None, every: int = 1, floor: int = 0
) -> List[int]:
    """Gradual unfreezing (ULMFiT): frozen block count per epoch, one more top block thawed every ``every`` epochs.

    start_frozen: blocks frozen at epoch 0 (default all L: only the head trains first);
    floor: never thaw below this many frozen blocks. Returns a list of length ``epochs``.
    """
    start = num_layers if start_frozen is None else start_frozen
    if not 0 <= floor <= start <= num_layers or every < 1 or epochs < 0:
        raise InputError(
            f"schedule: need 0 <= floor ({floor}) <= start_frozen ({start}) <= layers ({num_layers}), "
            f"every >= 1 (got {every}), epochs >= 0 (got {epochs})"
        )
    return [max(floor, start - e // every) for e in range(epochs)]


# ---------------------------------------------------------------------------
# Rebuild + probe check
# ---------------------------------------------------------------------------


def probe_batch(vocab_size: int, max_positions: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two rows of ids: the second padded, with type ids 0 then 1."""
    rng = np.random.default_rng(seed)
    S = min(16, max_positions)
    ids = rng.integers(1, vocab_size, size=(2, S)).astype(np.int32)
    mask = np.ones((2, S), np.int32)
    mask[1, S - S // 3 :] = 0
    ids[1, S - S // 3 :] = 0
    types = np.zeros((2, S), np.int32)
    types[:, S // 2 :] = 1
    types[1, S - S // 3 :] = 0
    return ids, mask, types


def compare(hub_out: Activations, garden_out: Activations, mask: np.ndarray) -> Dict[str, float]:
    """Max |diff| per output (two ``Activations``), on unmasked positions, scaled by max(1, max |hub|)."""
    m = mask.astype(bool)
    diffs = {}
    pairs = [("sequence_output", hub_out.sequence, garden_out.sequence)]
    if hub_out.layers is not None:
        pairs += [(f"encoder_outputs[{i}]", a, b) for i, (a, b) in enumerate(zip(hub_out.layers, garden_out.layers))]
    if hub_out.pooled is not None and garden_out.pooled is not None:
        pairs.append(("pooled_output", hub_out.pooled, garden_out.pooled))
    for name, a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim == 3:
            a, b = a[m], b[m]
        diffs[name] = float(np.abs(a - b).max() / max(1.0, float(np.abs(a).max())))
    return diffs


def rebuild(
    obj: Any,
    signature: Any,
    *,
    handle: str = "",
    entry: Any = None,
    ops: Optional[Collection[str]] = None,
    hub_backend: Any = None,
) -> GardenEncoder:
    """Rebuild the loaded Hub encoder ``obj`` with Model Garden and check it on a probe batch."""
    import tensorflow as tf

    require()
    weights = hub_weights(obj)
    names = [v.name.split(":")[0] for v in getattr(obj, "variables", None) or []]
    family = family_of(names, entry)
    hints = [getattr(entry, "extra", {}).get("heads")] if entry is not None else []
    m = re.search(r"_A-(\d+)", handle or "")
    hints += [int(m.group(1))] if m else []
    L = signature.num_layers if family == "albert" else None
    if family == "albert" and not L and entry is not None:
        L = entry.layers
    hub = hub_backend or HubBackend(obj, signature.format)
    ids, mask, types = probe_batch(
        int(weights["word_embeddings/embeddings"].shape[0]), int(weights["position_embedding/embeddings"].shape[0])
    )
    expected = hub(tf.constant(ids), tf.constant(mask), tf.constant(types))
    tried = []
    candidates = screen(
        weights,
        family,
        itertools.product(head_candidates(weights, family, [h for h in hints if h]), activation_candidates(ops or ())),
        expected,
        (ids, mask, types),
    )
    for heads, act in itertools.islice(candidates, 12):  # at most 12 builds
        cfg = read_config(weights, family, num_layers=L, num_heads=heads, activation=act)
        enc = GardenEncoder(build_model(cfg, weights), cfg, handle)
        diffs = compare(expected, enc(ids, mask, types), mask)
        worst = max(diffs.values())
        tried.append((heads, act, worst))
        if worst <= TOLERANCE:
            cfg.checked = diffs
            log.info(
                "rebuilt %s with Model Garden (%s, %d layers, %d heads, %s); probe max |diff| %.1e",
                handle,
                family,
                cfg.num_layers,
                heads,
                act,
                worst,
            )
            return enc
    shown = "; ".join(f"{h} heads + {a}: {d:.2e}" for h, a, d in tried)
    raise FormatError(
        f"the Model Garden rebuild of {handle or 'this encoder'} does not reproduce its outputs on "
        f"a probe batch (max |diff| relative to the output scale, tolerance {TOLERANCE:g}: {shown}); "
        f"refusing to use it"
    )
