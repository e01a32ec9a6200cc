"""The one result store: every saved result knows the key it was computed under, and its checksum.

A result's *key* is a hash of everything that determines its numbers, given by the caller as a
dict (the measure and its settings, theta and directions by content, the evaluated data by content,
the BatchNorm policy and its examples, batch size, dtype, loss, device kind; see
:meth:`Evaluator.fingerprint`) together with :data:`COMPUTATION_VERSION`. A file is reused only
under the same key: a rerun under other settings recomputes, whatever the file name. Every file
also carries a checksum of its content, so a truncated, corrupt or foreign file is recomputed with
a one-line notice instead of being read as data. Writes are atomic (:mod:`losslandscape.files`).

Three containers, one rule: ``.npz`` arrays with a provenance record (curves, surfaces, kernels,
partial scans), JSON records (runs of a task, pairs, summaries) and torch dicts of tensors
(control points, training snapshots). The key and checksum sit in the file under ``"store"``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import StorageError
from .files import as_json, read_npz, save_torch, write_json, write_npz

# Raise it when a change to the code changes stored numbers: every result made before is recomputed.
COMPUTATION_VERSION = 2

log = logging.getLogger(__name__)

# what a damaged file raises while it is read, whichever container it is
UNREADABLE = (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError,
              pickle.UnpicklingError, RuntimeError)


class CorruptResult(StorageError):
    """A result file that is truncated, damaged, or was not written by the store."""


def result_key(parts: dict[str, Any]) -> str:
    """The key of a result: a hash of what determines its numbers and of the computation's version."""
    return content_digest({"version": COMPUTATION_VERSION, "parts": parts})


def content_digest(value: Any) -> str:
    """SHA-256 of nested dicts, lists, tensors, arrays and JSON values (key order does not matter;
    tensors and arrays by dtype, shape and bytes, so equal values on any device hash alike)."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()[:20]


def _feed(digest, value: Any) -> None:
    if isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=str):
            digest.update(json.dumps(str(key)).encode())
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):  # a tuple reads back from JSON as a list: the same content
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"tensor:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    elif isinstance(value, np.ndarray):
        digest.update(f"array:{value.dtype.str}:{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    else:
        digest.update(json.dumps(as_json(value)).encode())


def _stamp(key: str | None, content: Any) -> dict[str, Any]:
    return {"key": key, "version": COMPUTATION_VERSION, "checksum": content_digest({"key": key, "content": content})}


def _verified(path: Path, stamp: Any, content: Any) -> str | None:
    """The key a file was stored under, after checking its checksum."""
    if not isinstance(stamp, dict) or "checksum" not in stamp:
        raise CorruptResult(f"{path} was not written by losslandscape's result store (no checksum)")
    if content_digest({"key": stamp.get("key"), "content": content}) != stamp["checksum"]:
        raise CorruptResult(f"{path} is damaged: its content does not match its checksum")
    return stamp.get("key")


# ---- .npz: arrays and a provenance record ----------------------------------------------------

def save_arrays(path: str | os.PathLike, arrays: dict[str, Any], provenance: dict[str, Any], key: str | None) -> None:
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    provenance = as_json(provenance)
    write_npz(path, arrays, {**provenance, "store": _stamp(key, {"arrays": arrays, "provenance": provenance})})


def read_arrays(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any], str | None]:
    """``(arrays, provenance, key)`` of a stored ``.npz``; :class:`CorruptResult` if it is damaged."""
    path = Path(path)
    try:
        arrays, provenance = read_npz(path)
    except UNREADABLE as error:
        raise CorruptResult(f"{path} cannot be read ({type(error).__name__}: {error}); it is truncated or not an .npz file") from error
    stamp = provenance.pop("store", None)
    return arrays, provenance, _verified(path, stamp, {"arrays": arrays, "provenance": provenance})


def load_arrays(path: str | os.PathLike, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """The stored ``(arrays, provenance)`` when ``path`` holds a sound result made under ``key``, else None."""
    found = _reusable(path, key, read_arrays)
    return None if found is None else found[:2]


# ---- JSON records ----------------------------------------------------------------------------

def save_record(path: str | os.PathLike, record: dict[str, Any], key: str | None) -> None:
    record = as_json(record)
    write_json(path, {**record, "store": _stamp(key, record)})


def read_record(path: str | os.PathLike) -> tuple[dict[str, Any], str | None]:
    return _read_stamped(Path(path), lambda p: json.loads(p.read_text()), "JSON")


def load_record(path: str | os.PathLike, key: str) -> dict[str, Any] | None:
    found = _reusable(path, key, read_record)
    return None if found is None else found[0]


# ---- torch dicts (tensors and JSON values) ---------------------------------------------------

def save_tensors(path: str | os.PathLike, content: dict[str, Any], key: str | None) -> None:
    save_torch(path, {**content, "store": _stamp(key, content)})


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, Any], str | None]:
    return _read_stamped(Path(path), lambda p: torch.load(p, map_location="cpu", weights_only=True), "a torch file")


def _read_stamped(path: Path, load: Callable[[Path], Any], container: str) -> tuple[dict[str, Any], str | None]:
    """``(content, key)`` of a dict that carries its stamp under ``"store"``, checksum verified."""
    try:
        content = load(path)
    except UNREADABLE as error:
        raise CorruptResult(f"{path} cannot be read ({type(error).__name__}: {error}); it is truncated or not {container}") from error
    if not isinstance(content, dict):
        raise CorruptResult(f"{path} was not written by losslandscape's result store (not a record)")
    stamp = content.pop("store", None)
    return content, _verified(path, stamp, content)


def load_tensors(path: str | os.PathLike, key: str) -> dict[str, Any] | None:
    found = _reusable(path, key, read_tensors)
    return None if found is None else found[0]


def cached_record(path: str | os.PathLike, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The record at ``path`` if it was made under ``key``, else ``compute()`` stored there."""
    record = load_record(path, key)
    if record is None:
        record = as_json(compute())
        save_record(path, record, key)
    return record


def _reusable(path: str | os.PathLike, key: str, read: Callable) -> tuple | None:
    """``read(path)`` when the file exists, is sound and was made under ``key``; a damaged file gets a
    one-line notice (it is then recomputed and overwritten), one made under another key is quietly recomputed."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        *found, stored_key = read(path)
    except CorruptResult as error:
        log.warning("%s: recomputing it", error)
        return None
    if stored_key != key:
        log.info("%s was computed under other settings (key %s, now %s): recomputing it", path, stored_key, key)
        return None
    return tuple(found)
