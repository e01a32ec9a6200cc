"""Atomic, provenance-carrying result files: a crash never leaves half a file behind."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import platform
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .errors import StorageError

# errors of the storage, not of the program: the user frees space or picks another folder
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.EROFS: "read-only file system"}


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A full disk or a folder without write permission raises :class:`StorageError` naming the path
    and what was kept: the temporary file is removed, ``path`` keeps its previous content (if any).
    """
    path = Path(path)
    existed = path.exists()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as error:
        if error.errno not in STORAGE_ERRNOS:
            raise
        kept = f"{path.name} keeps its previous content" if existed else f"no partial {path.name} was left behind"
        raise StorageError(f"cannot write {path}: {STORAGE_ERRNOS[error.errno]} ({error.strerror}); {kept}, and every "
                           f"file written before is intact; free space or give a writable folder (cache_dir=..., "
                           f"output_dir=...), then rerun the same command to continue") from error
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.remove(tmp)


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def as_json(data: Any) -> Any:
    """``data`` as it reads back from a JSON file (tuples become lists, numpy scalars numbers)."""
    return json.loads(json.dumps(data, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def write_npz(path: str | os.PathLike, arrays: dict[str, Any], provenance: dict[str, Any]) -> None:
    """Save ``arrays`` with ``provenance`` (a JSON string under the key ``provenance``)."""
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["provenance"] = np.asarray(json.dumps(provenance, sort_keys=True, default=_json_default))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object stops numpy from appending ".npz" to the temp name
            np.savez(f, **payload)


def read_npz(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of :func:`write_npz`: ``(arrays, provenance)``."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "provenance"}
        provenance = json.loads(str(data["provenance"])) if "provenance" in data.files else {}
    return arrays, provenance


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    # serialized in memory first: torch's own file writer reports a full disk as "unexpected pos",
    # a plain write reports ENOSPC
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def stable_hash(data: Any, length: int = 12) -> str:
    """Hash of JSON-able ``data`` that does not depend on key order, Python version or process."""
    text = json.dumps(data, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def tensor_dict_hash(tensors: dict[str, torch.Tensor], length: int = 12) -> str:
    """Content hash of a parameter dict (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:length]


def package_versions() -> dict[str, str]:
    """Versions that change numbers, recorded in every result's provenance."""
    import losslandscape

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "losslandscape": losslandscape.__version__,
    }
