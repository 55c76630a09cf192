"""``hubembed export --format litert``: the file format of an on-device export, ``OUT/model.tflite``.

One LiteRT (TFLite) flatbuffer: three int32 inputs ``ids``, ``mask``, ``segment_ids`` of shape ``[1, S]`` and one
float32 output ``[1, D]`` (the spec's layers, combination, pooling and normalisation inside the graph), with TFLite
model metadata that describes it the way MediaPipe Tasks' ``TextEmbedder`` (Android, iOS, web, Python) expects: the
input tensors named ``ids``/``mask``/``segment_ids`` and a ``BertTokenizerOptions`` input process unit whose
``vocab.txt`` is packed inside the file (a zip archive appended to the flatbuffer, as the TFLite metadata
populator packs associated files).

The metadata is written from the metadata schema itself (``metadata_schema.fbs``, file identifier ``M001``) with
the ``flatbuffers`` library, and attached with the TFLite schema that LiteRT ships (``ai_edge_litert.
schema_py_generated``): MediaPipe's own metadata writers do not import without its C++ metadata module (missing from
the ``mediapipe`` wheel on PyPI), and tflite-support's need TensorFlow Lite Support's native library, unmaintained
since 2023. The schema is versioned and stable; the test reads the written metadata back with MediaPipe's generated
reader and runs MediaPipe's ``TextEmbedder`` on the file.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import List, Sequence

from hubembed.errors import FormatError

METADATA_NAME = "TFLITE_METADATA"  # the model metadata entry readers look for
INPUTS = ("ids", "mask", "segment_ids")  # MediaPipe's BERT preprocessor finds its inputs by these names
OUTPUT = "embedding"
VOCAB = "vocab.txt"
MIN_PARSER_VERSION = "1.1.0"  # BertTokenizerOptions and input_process_units were added in metadata 1.1.0
_BERT_TOKENIZER_OPTIONS = 4  # ProcessUnitOptions: NONE, Normalization, ScoreCalibration, ScoreThresholding, Bert...
_VOCABULARY = 5  # AssociatedFileType


def metadata(input_names: Sequence[str], *, name: str, description: str, version: str) -> bytes:
    """The ``ModelMetadata`` flatbuffer for an embedder: one subgraph, ``input_names`` in the model's input order
    (each one of ``INPUTS``), one output ``OUTPUT``, and the BERT tokenizer process unit with ``VOCAB``."""
    import flatbuffers

    b = flatbuffers.Builder(1024)

    def table(fields: List[tuple]) -> int:
        """A table from (slot, kind, value) fields: kind "offset" (already built), "int8" or "uint8"."""
        b.StartObject(max(slot for slot, _, _ in fields) + 1)
        for slot, kind, value in fields:
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "int8":
                b.PrependInt8Slot(slot, value, 0)
            else:
                b.PrependUint8Slot(slot, value, 0)
        return b.EndObject()

    def vector(offsets: List[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for o in reversed(offsets):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    def tensor(tensor_name: str, text: str) -> int:  # TensorMetadata: name 0, description 1
        n, d = b.CreateString(tensor_name), b.CreateString(text)
        return table([(0, "offset", n), (1, "offset", d)])

    about = {
        "ids": "word piece ids: [CLS] text [SEP], padded with 0",
        "mask": "1 for the real tokens, 0 for padding",
        "segment_ids": "0 for the first segment (every token of a single text)",
    }
    inputs = [tensor(n, about[n]) for n in input_names]
    outputs = [tensor(OUTPUT, "the text's vector, as hubembed's embed computes it")]
    file_name, file_about = b.CreateString(VOCAB), b.CreateString("the WordPiece vocabulary")
    vocab = table([(0, "offset", file_name), (1, "offset", file_about), (2, "int8", _VOCABULARY)])
    options = table([(0, "offset", vector([vocab]))])  # BertTokenizerOptions: vocab_file 0
    unit = table([(0, "uint8", _BERT_TOKENIZER_OPTIONS), (1, "offset", options)])  # ProcessUnit: options (union)
    in_vec, out_vec, units = vector(inputs), vector(outputs), vector([unit])
    # SubGraphMetadata: input_tensor_metadata 2, output_tensor_metadata 3, input_process_units 5
    subgraph = table([(2, "offset", in_vec), (3, "offset", out_vec), (5, "offset", units)])
    strings = [b.CreateString(s) for s in (name, description, version, MIN_PARSER_VERSION)]
    subgraphs = vector([subgraph])
    # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, min_parser_version 7
    root = table(
        [(0, "offset", strings[0]), (1, "offset", strings[1]), (2, "offset", strings[2]), (3, "offset", subgraphs)]
        + [(7, "offset", strings[3])]
    )
    b.Finish(root, file_identifier=b"M001")
    return bytes(b.Output())


def input_names(model: bytes) -> List[str]:
    """The model's input tensors in the subgraph's order, named by its ``serving_default`` signature (the arguments
    of the converted function: ``ids``, ``mask``, ``segment_ids``)."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAsModel(model, 0)
    graph = m.Subgraphs(0)
    by_tensor = {}
    for k in range(m.SignatureDefsLength()):
        sig = m.SignatureDefs(k)
        for i in range(sig.InputsLength()):
            by_tensor[sig.Inputs(i).TensorIndex()] = sig.Inputs(i).Name().decode("utf-8")
    names = [by_tensor.get(graph.Inputs(i), "") for i in range(graph.InputsLength())]
    if sorted(names) != sorted(INPUTS):
        raise FormatError(f"the converted model's inputs are {names}, not {list(INPUTS)}")
    return names


def attach(model: bytes, meta: bytes, vocab_file: str) -> bytes:
    """``model`` with ``meta`` as its ``TFLITE_METADATA`` buffer and ``vocab_file`` packed inside it as ``VOCAB``."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(meta, np.uint8)
    m.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(m.buffers) - 1
    m.metadata = [x for x in (m.metadata or []) if x.name not in (METADATA_NAME, METADATA_NAME.encode())] + [entry]
    b = flatbuffers.Builder(len(model) + len(meta) + 1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    out = io.BytesIO(bytes(b.Output()))
    out.seek(0, os.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:  # appended after the flatbuffer
        z.write(vocab_file, VOCAB)
    return out.getvalue()
