"""SentencePiece tokenization with T5's conventions: pieces, then EOS; fixed length; pad 0; mask 1 on real tokens.

    tok = Tokenizer(path, max_length=64)
    tok.encode(["a dog barking"]) -> (ids [B, 64] int64, mask [B, 64] int64)   # over-long: cut, EOS kept last
    tok.fit(prompt, truncate=False) -> tokens it takes (EOS included); over-long: one EdgegenError line

`encode` truncates as the model's T5 conditioner does, with a UserWarning (parity and training feed over-long
prompts on purpose); generation (`Pipeline.generate`, `BundlePipeline.generate`, the CLI) calls `fit` first, which
refuses an over-long prompt unless truncation was asked for (`truncate_prompt=True`, `--truncate-prompt`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import sentencepiece as spm

from edgegen.errors import EdgegenError


class Tokenizer:
    def __init__(self, path: Path, *, max_length: int = 64, eos_id: int = 1, pad_id: int = 0):
        self.path = Path(path)
        if not self.path.is_file():
            raise EdgegenError(f"tokenizer model not found: {self.path}")
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        except Exception as exc:
            raise EdgegenError(f"{self.path} is not a SentencePiece model ({exc})") from None
        self.max_length, self.eos_id, self.pad_id = max_length, eos_id, pad_id

    def count(self, prompt: str) -> int:
        """Tokens `prompt` takes untruncated, EOS included."""
        return len(self.sp.encode(prompt)) + 1

    def fit(self, prompt: str, *, truncate: bool) -> int:
        """Tokens `prompt` takes (EOS included). More than max_length: with `truncate` the caller accepts the cut
        (`encode` keeps the first max_length - 1 and EOS), without it one EdgegenError line names both numbers."""
        n = self.count(prompt)
        if n > self.max_length and not truncate:
            raise EdgegenError(f"the prompt is {n} tokens and this model takes at most {self.max_length} (EOS "
                               f"included); shorten it, or pass --truncate-prompt to keep its first "
                               f"{self.max_length - 1} tokens")
        return n

    def encode_one(self, prompt: str) -> list[int]:
        """Token ids with EOS last, truncated to max_length with a warning (generation refuses first: see `fit`)."""
        pieces = self.sp.encode(prompt)
        if len(pieces) > self.max_length - 1:
            warnings.warn(f"prompt is {len(pieces) + 1} tokens; truncated to {self.max_length}", stacklevel=3)
            pieces = pieces[: self.max_length - 1]
        return pieces + [self.eos_id]

    def encode(self, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(prompts), self.max_length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(prompts), self.max_length), dtype=np.int64)
        for row, prompt in enumerate(prompts):
            tokens = self.encode_one(prompt)
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        return ids, mask
