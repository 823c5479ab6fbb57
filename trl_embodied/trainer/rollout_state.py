"""A run's rollout state in safe files: JSON for plain data, safetensors for tensors.

Resuming reads these two files and nothing else, and neither format can run code on load (pickle can),
so a checkpoint from anyone (the Hub, a shared disk) is safe to resume. The state is a tree of dicts,
lists and plain values; :func:`save_tree` writes its tensors to safetensors and the rest to JSON, with
small tags for what JSON lacks (tuples, frozensets, numpy arrays, tensor references), and
:func:`load_tree` rebuilds the same tree or raises an error that names the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

# Tags of the JSON encoding: a dict with exactly one of these keys stands for that type.
TENSOR, TUPLE, FROZENSET, NDARRAY = "__tensor__", "__tuple__", "__frozenset__", "__ndarray__"
TAGS = (TENSOR, TUPLE, FROZENSET, NDARRAY)


class NotPlainData(TypeError):
    """A value of the tree that neither JSON nor safetensors can hold; the message names where it is."""


def encode(value: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """``value`` as JSON-able data; its tensors are moved into ``tensors`` (keyed by where they were)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        tensors[where] = value.detach().cpu().contiguous()
        return {TENSOR: where}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise NotPlainData(f"{where} is a numpy array of {value.dtype}, not of numbers")
        return {NDARRAY: value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, tuple):
        return {TUPLE: [encode(v, tensors, f"{where}.{i}") for i, v in enumerate(value)]}
    if isinstance(value, frozenset):
        items = [encode(v, tensors, f"{where}.{i}") for i, v in enumerate(value)]
        return {FROZENSET: sorted(items, key=json.dumps)}  # a set has no order: the file gets a stable one
    if isinstance(value, list):
        return [encode(v, tensors, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise NotPlainData(f"{where} has non-string keys {[k for k in value if not isinstance(k, str)]}")
        if value.keys() & set(TAGS):
            raise NotPlainData(
                f"{where} has a key reserved for the encoding ({sorted(value.keys() & set(TAGS))})"
            )
        return {k: encode(v, tensors, f"{where}.{k}") for k, v in value.items()}
    raise NotPlainData(f"{where} is a {type(value).__module__}.{type(value).__name__}, not plain data")


def decode(value: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v, tensors, f"{where}.{i}") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    tags = value.keys() & set(TAGS)
    if not tags:
        return {k: decode(v, tensors, f"{where}.{k}") for k, v in value.items()}
    (tag,) = tags if len(tags) == 1 else (None,)
    if set(value) != ({NDARRAY, "dtype", "shape"} if tag == NDARRAY else {tag}):
        raise ValueError(f"{where} is a malformed tagged value (keys {sorted(value)})")
    if tag == TENSOR:
        if value[TENSOR] not in tensors:
            raise ValueError(f"{where} refers to tensor {value[TENSOR]!r}, which the tensor file lacks")
        return tensors[value[TENSOR]]
    if tag == NDARRAY:
        return np.asarray(value[NDARRAY], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    if tag == TUPLE:
        return tuple(decode(v, tensors, f"{where}.{i}") for i, v in enumerate(value[TUPLE]))
    return frozenset(decode(v, tensors, f"{where}.{i}") for i, v in enumerate(value[FROZENSET]))


def _replace_atomically(path: Path, write) -> None:
    """``write(staging_path)``, then rename it into place: a crash never leaves a half-written file."""
    staging = path.with_name(path.name + ".tmp")
    write(staging)
    os.replace(staging, path)


def save_tree(tree: dict[str, Any], json_path: Path, tensors_path: Path) -> None:
    """Write ``tree`` as ``json_path`` (plain data) and ``tensors_path`` (safetensors). The tensor file is
    written first, so a JSON file on disk always has its tensors."""
    tensors: dict[str, torch.Tensor] = {}
    data = encode(tree, tensors)
    _replace_atomically(tensors_path, lambda p: save_file(tensors, str(p)))
    _replace_atomically(json_path, lambda p: p.write_text(json.dumps(data)))


def load_tree(json_path: Path, tensors_path: Path) -> dict[str, Any]:
    """Read what :func:`save_tree` wrote. A damaged or foreign file raises ``ValueError`` naming it."""
    try:
        data = json.loads(Path(json_path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{json_path} is not a readable rollout state ({error})") from error
    try:
        tensors = load_file(str(tensors_path))
    except Exception as error:  # safetensors raises its own error types on a damaged header
        raise ValueError(f"{tensors_path} is not a readable safetensors file ({error})") from error
    try:
        tree = decode(data, tensors)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{json_path} is damaged: {error}") from error
    if not isinstance(tree, dict):
        raise ValueError(f"{json_path} holds a {type(tree).__name__}, not a rollout state")
    return tree
