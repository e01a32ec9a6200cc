"""A local text corpus as a language-modelling set: fixed-length blocks of token ids, next tokens as targets.

Block ``i`` is ``x = tokens[iT : iT + T]`` and ``y = tokens[iT + 1 : iT + T + 1]`` (non-overlapping,
``T = block_size``), for a token-level cross entropy. Tokens are characters by default (the sorted
set of the corpus' characters, computed again at every load, so nothing is saved), or the ids of a
local Hugging Face tokenizer directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from losslandscape.data.splits import DataSplits, DatasetError, build_any_splits, file_sha256, hold_out
from losslandscape.data.tensors import safe_name


def load_text(
    path: str,
    block_size: int = 64,
    tokenizer: str | None = None,
    test_fraction: float = 0.1,
    encoding: str = "utf-8",
    train_size: int | None = None,
    seed: int = 0,
) -> DataSplits:
    """Blocks of ``path`` (a text file, or a folder whose ``*.txt`` files are concatenated in sorted
    order) as int64 ``(N, block_size)`` inputs and next-token targets; a seeded random
    ``test_fraction`` of the blocks is the test split. ``num_classes`` is the vocabulary size.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise DatasetError(f"block_size must be a positive integer, got {block_size!r}")
    files = text_files(Path(path))
    corpus = "".join(read_text(file, encoding) for file in files)
    if tokenizer is None:
        tokens, vocabulary_size = character_tokens(corpus)
        fingerprint = file_sha256(*files)
    else:
        tokens, vocabulary_size, fingerprint = tokenizer_tokens(corpus, Path(tokenizer), files)
    blocks = (len(tokens) - 1) // block_size
    if blocks < 1:
        raise DatasetError(
            f"{path} is {len(tokens)} tokens long, shorter than one block: block_size={block_size} needs at least "
            f"{block_size + 1} tokens (inputs and their next tokens); use a smaller block_size or more text"
        )
    x = tokens[: blocks * block_size].view(blocks, block_size)
    y = tokens[1 : blocks * block_size + 1].view(blocks, block_size)
    train, test = hold_out(x, y, test_fraction, seed)
    return build_any_splits(
        safe_name(Path(path).stem), train, test, vocabulary_size, train_size=train_size, seed=seed, fingerprint=fingerprint,
    )


def text_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DatasetError(f"{path} holds no .txt files; set dataset.path to a text file or a folder of .txt files")
        return files
    raise DatasetError(f"text not found: {path}; set dataset.path to a text file or a folder of .txt files")


def read_text(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path} is not valid {encoding} text ({error.reason} at byte {error.start}); "
                           "set dataset.encoding to the file's encoding") from error
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error}") from error


def character_tokens(corpus: str) -> tuple[torch.Tensor, int]:
    """Ids into the sorted set of the corpus' characters (code point order, as ``sorted(set(corpus))``)."""
    code_points = np.frombuffer(corpus.encode("utf-32-le"), dtype=np.uint32)
    vocabulary, ids = np.unique(code_points, return_inverse=True)
    return torch.from_numpy(ids.astype(np.int64)), len(vocabulary)


def tokenizer_tokens(corpus: str, directory: Path, files: list[Path]) -> tuple[torch.Tensor, int, str]:
    """Ids of a local Hugging Face tokenizer (no download), its vocabulary size (added tokens included)
    and a content hash of the text and the tokenizer's files."""
    if not directory.is_dir():
        raise DatasetError(f"tokenizer folder not found: {directory}; set dataset.tokenizer to a folder saved "
                           "with save_pretrained, or null for characters")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot load a tokenizer from {directory}: {str(error).splitlines()[0]}") from error
    ids = tokenizer(corpus, add_special_tokens=False, verbose=False)["input_ids"]
    tokenizer_files = sorted(p for p in directory.rglob("*") if p.is_file())
    return torch.tensor(ids, dtype=torch.int64), len(tokenizer), file_sha256(*files, *tokenizer_files)
