"""Audit: what a SavedModel's graphs would do when called (files, the network, Python), read from
saved_model.pb without loading or running anything.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set

from hubembed.errors import FormatError


def _saved_model(path: str) -> Any:  # a saved_model_pb2.SavedModel (TensorFlow has no stubs)
    """The SavedModel protocol buffer of ``path``/saved_model.pb, parsed without loading anything."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb = os.path.join(path, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    try:
        with open(pb, "rb") as f:
            sm.ParseFromString(f.read())
    except (OSError, Exception) as e:  # noqa: BLE001 (protobuf raises its own DecodeError)
        raise FormatError(f"cannot read {pb}: {e}") from None
    return sm


def op_types(path: str) -> dict:
    """Op type -> count over a SavedModel's graphs and function library, read from saved_model.pb without loading."""
    sm = _saved_model(path)
    ops: Counter[str] = Counter()
    for mg in sm.meta_graphs:
        ops.update(n.op for n in mg.graph_def.node)
        for fn in mg.graph_def.library.function:
            ops.update(n.op for n in fn.node_def)
    return dict(ops)


# Ops that reach outside the graph: the file system, Python, the network. A SavedModel runs them when called.
RISKY_OPS = {
    "ReadFile": "reads a file",
    "WriteFile": "writes a file",
    "MatchingFiles": "lists files",
    "ImmutableConst": "memory-maps a file",
    "LoadAndRemapMatrix": "reads a checkpoint file",
    "PyFunc": "runs Python code",
    "PyFuncStateless": "runs Python code",
    "EagerPyFunc": "runs Python code",
    "TFRecordDataset": "reads files",
    "TFRecordDatasetV2": "reads files",
    "TextLineDataset": "reads files",
    "FixedLengthRecordDataset": "reads files",
    "FixedLengthRecordDatasetV2": "reads files",
    "WholeFileReader": "reads files",
    "WholeFileReaderV2": "reads files",
    "TextLineReaderV2": "reads files",
    "TFRecordReaderV2": "reads files",
    "FixedLengthRecordReaderV2": "reads files",
    "SaveDataset": "writes files",
    "SaveDatasetV2": "writes files",
    "LoadDataset": "reads files",
    "SnapshotDatasetV2": "writes files",
    "CreateSummaryFileWriter": "writes files",
    "WriteSummary": "writes files",
    "WriteScalarSummary": "writes files",
    "WriteRawProtoSummary": "writes files",
    "DebugIdentityV2": "writes debug files",
    "DataServiceDataset": "talks to a network service",
    "DataServiceDatasetV2": "talks to a network service",
    "DataServiceDatasetV3": "talks to a network service",
    "DataServiceDatasetV4": "talks to a network service",
    "RpcCall": "talks to the network",
    "RpcClient": "talks to the network",
    "RpcServer": "opens a network server",
    "RpcServerStart": "opens a network server",
    "Rpc": "talks to the network",
    "TryRpc": "talks to the network",
}


# Legitimate where SavedModels put them: checkpoint ops in the saver/restore functions (TF1: the save/
# scope), vocabulary tables initialised from their asset file in initializer functions.
CHECKPOINT_OPS = {
    "SaveV2",
    "RestoreV2",
    "MergeV2Checkpoints",
    "ShardedFilename",
    "ShardedFilespec",
    "Save",
    "Restore",
    "RestoreSlice",
    "SaveSlices",
}


TABLE_FILE_OPS = {"InitializeTableFromTextFile", "InitializeTableFromTextFileV2"}


@dataclass
class Finding:
    op: str
    where: str  # the function (or TF1 graph node) it occurs in
    why: str


@dataclass
class Audit:
    """What a SavedModel's graph would do when run, read without running it."""

    path: str
    functions: Dict[str, List[str]]  # function (or "graph") -> its op types
    findings: List[Finding]

    @property
    def ok(self) -> bool:
        return not self.findings

    def describe(self) -> str:
        n_ops = len({op for ops in self.functions.values() for op in ops})
        lines = [f"audit of {self.path}: {len(self.functions)} functions, {n_ops} op types"]
        for name, ops in sorted(self.functions.items()):
            lines.append(f"  {name}: {', '.join(ops)}")
        if self.ok:
            lines.append(
                "  nothing flagged: no op touches files (beyond variable restore and vocabulary "
                "assets), the network or Python"
            )
        for f in self.findings:
            lines.append(f"  FLAGGED {f.op} in {f.where}: {f.why}")
        return "\n".join(lines)


def _fn_kind(name: str) -> str:
    if re.search(r"_traced_(save|restore)_\d+$|_(save|restore)_fn_\d+$", name):
        return "saver"
    if re.search(r"initializer", name):
        return "initializer"
    return "call"


def _judge(op: str, where: str, kind: str) -> Optional[str]:
    if op in RISKY_OPS:
        return RISKY_OPS[op]
    if op in CHECKPOINT_OPS and kind != "saver":
        return "reads or writes checkpoint files outside the saver functions"
    if op in TABLE_FILE_OPS and kind not in ("initializer", "saver"):
        return "reads a text file into a table outside an initializer"
    return None


def audit(path: str) -> Audit:
    """The op types of every function of the SavedModel at ``path``, and the ones flagged (``RISKY_OPS``,
    checkpoint ops outside the saver, file-backed tables outside initializers), from saved_model.pb alone."""
    sm = _saved_model(path)
    functions: Dict[str, Set[str]] = {}
    findings: List[Finding] = []
    for mg in sm.meta_graphs:
        for n in mg.graph_def.node:
            functions.setdefault("graph", set()).add(n.op)
            scope = n.name.split("/")[0]
            kind = (
                "saver"
                if re.fullmatch(r"save(_\d+)?", scope)
                else "initializer"
                if "init" in scope or "table" in scope.lower()
                else "call"
            )
            why = _judge(n.op, n.name, kind)
            if why:
                findings.append(Finding(n.op, f"graph node {n.name}", why))
        for fn in mg.graph_def.library.function:
            name = fn.signature.name
            functions.setdefault(name, set()).update(n.op for n in fn.node_def)
            for n in fn.node_def:
                why = _judge(n.op, name, _fn_kind(name))
                if why:
                    findings.append(Finding(n.op, f"function {name} (node {n.name})", why))
    return Audit(path, {k: sorted(v) for k, v in functions.items()}, findings)
