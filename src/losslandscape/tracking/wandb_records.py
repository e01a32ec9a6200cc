"""Read back what a W&B run recorded: the records of a ``.wandb`` file (offline runs included).

The file is a LevelDB-style log (what the W&B SDK writes and ``wandb sync`` uploads): a 7-byte
header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each with a CRC-32,
a length and a type (full, first, middle, last); a record is a ``wandb.proto`` ``Record``.
Used by the tests to prove that curves, surfaces and summaries were really logged.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    if not data.startswith(HEADER):
        raise ValueError("not a .wandb file: its header is missing")
    position, pending = len(HEADER), b""
    while position + CHUNK_HEADER <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < CHUNK_HEADER:  # the writer pads a block's tail that cannot hold a header
            position += left_in_block
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + CHUNK_HEADER])
        chunk = data[position + CHUNK_HEADER : position + CHUNK_HEADER + length]
        position += CHUNK_HEADER + length
        if length == 0 and kind == 0:  # zero padding at the end of a block
            continue
        if zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF != checksum:
            raise ValueError(f"corrupt .wandb chunk at byte {position - length - CHUNK_HEADER}")
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            yield pending
            pending = b""


def read_records(path: str | Path) -> list[Any]:
    """Every ``wandb_internal_pb2.Record`` of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    records = []
    for payload in _payloads(Path(path).read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def logged_history(path: str | Path) -> list[dict[str, Any]]:
    """The rows passed to ``run.log``, with JSON values decoded."""
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in read_records(path)
        if record.WhichOneof("record_type") == "history"
    ]


def logged_summary(path: str | Path) -> dict[str, Any]:
    """The run summary as the last summary records left it."""
    summary: dict[str, Any] = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary


def logged_artifacts(path: str | Path) -> list[tuple[str, str]]:
    """``(name, type)`` of every artifact the run logged."""
    return [
        (record.artifact.name, record.artifact.type)
        for record in read_records(path)
        if record.WhichOneof("record_type") == "artifact"
    ]


def finished_run_file(run_dir: str | Path, timeout: float = 60.0) -> Path:
    """The ``.wandb`` file of the one offline run under ``run_dir/wandb`` once it holds the run's exit record.

    W&B's service writes the file asynchronously: right after ``run.finish()`` returns, on a loaded
    machine, it can still be a bare header or end in a chunk being written.
    """
    import time

    (path,) = (Path(run_dir) / "wandb").glob("offline-run-*/*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in read_records(path)):
                return path
        except ValueError:  # a chunk still being written
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} has no exit record after {timeout} s")
        time.sleep(0.2)


def logged_run(path: str | Path) -> dict[str, Any]:
    """Who the run is: ``id``, ``project``, ``entity``, ``group``, ``name``, ``job_type`` and its ``config``
    (the run record's config with later config updates applied, W&B's own ``_wandb`` key left out)."""
    run: dict[str, Any] = {"config": {}}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.update(id=r.run_id, project=r.project, entity=r.entity or None, group=r.run_group or None,
                       name=r.display_name, job_type=r.job_type)
            updates = r.config.update
        elif kind == "config":
            updates = record.config.update
        else:
            continue
        for item in updates:
            if item.key and item.key != "_wandb":
                run["config"][item.key] = json.loads(item.value_json)
    return run
