"""Pretrained Hugging Face encoders inside the model, trained with it end to end on raw input.

``hf_text`` runs a text model (RoBERTa, BERT, …) on the tokens of ``raw_text``; ``hf_audio`` a speech model
(Data2VecAudio, wav2vec 2.0, HuBERT, WavLM, …) on the waveforms of ``raw_audio``. Each loads a local
directory (``model.pretrained.text`` / ``.audio``; nothing is downloaded), projects the last hidden states
to the model width and returns them with their own mask, since the output steps (tokens, audio frames)
are not the input's. The checkpoint stores the whole backbone's weights; the directory supplies its
architecture, tokenizer and feature extractor when the model is rebuilt (docs/raw_inputs.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmolre_cli.config import PretrainedConfig
from mmolre_cli.data.canonical import Split
from mmolre_cli.errors import DataError, UsageError


def layer_stack(backbone: nn.Module) -> nn.ModuleList:
    """The backbone's list of Transformer layers (``encoder.layer`` in BERT-like, ``encoder.layers`` in
    wav2vec2-like models)."""
    encoder = getattr(backbone, "encoder", None)
    for name in ("layer", "layers"):
        stack = getattr(encoder, name, None)
        if isinstance(stack, nn.ModuleList):
            return stack
    raise UsageError(f"model.pretrained.freeze_layers: cannot find the layers of {type(backbone).__name__}")


def freeze_first_layers(backbone: nn.Module, n: int) -> None:
    """Fix the first ``n`` layers and every parameter outside the layer stack (the embeddings, or the
    convolutional feature encoder of a speech model); ``n`` ≥ the number of layers fixes the whole backbone."""
    if n <= 0:
        return
    trainable = {id(p) for layer in layer_stack(backbone)[n:] for p in layer.parameters()}
    for parameter in backbone.parameters():
        if id(parameter) not in trainable:
            parameter.requires_grad_(False)


class PretrainedEncoder(nn.Module):
    """A Hugging Face backbone, its last hidden states projected to ``d_model``; ``inputs`` turns a split's
    raw data into what ``forward`` takes."""

    def __init__(self, backbone: nn.Module, d_model: int, dropout: float, settings: PretrainedConfig):
        super().__init__()
        self.backbone = backbone
        freeze_first_layers(backbone, settings.freeze_layers)
        if settings.gradient_checkpointing:
            if hasattr(backbone, "activation_checkpointing_enable"):  # transformers ≥ 5.x's name
                backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.project = nn.Linear(int(backbone.config.hidden_size), d_model)
        self.dropout = nn.Dropout(dropout)

    def output(self, hidden: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.dropout(self.project(hidden.to(self.project.weight.dtype))) * mask[..., None], mask


class HFTextModel(PretrainedEncoder):
    """A text model on token ids (B, T) with a token mask; ``inputs`` tokenizes ``raw_text``."""

    def __init__(self, d_model: int, dropout: float, settings: PretrainedConfig):
        from mmolre_cli.data.text_encoders import load_text_model, max_tokens

        if settings.text is None:
            raise UsageError("model.pretrained.text: the hf_text encoder needs a local model directory")
        self.tokenizer, backbone = load_text_model(settings.text, "--encoder hf_text")
        if getattr(backbone, "pooler", None) is not None:  # unused: it would get no gradient (an error under DDP)
            backbone.pooler = None
        super().__init__(backbone, d_model, dropout, settings)
        self.max_tokens = max_tokens(self.tokenizer, backbone)

    def inputs(self, split: Split, audio_rate: int | None) -> tuple[Tensor, Tensor]:
        """Token ids (N, T) long, right-padded, and lengths (N,), truncated to what the model takes."""
        if split.raw_text is None:
            raise DataError("raw_text: the hf_text encoder needs the texts (prepare the data with `prepare csv`)")
        tokens = self.tokenizer(
            list(split.raw_text), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        return tokens["input_ids"], tokens["attention_mask"].sum(1)

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.backbone(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return self.output(hidden, mask)

    def random_input(self, batch: int, steps: int, device: torch.device | str) -> Tensor:
        """Random token ids (batch, steps), for profiling."""
        vocabulary = int(self.backbone.config.vocab_size)
        return torch.randint(0, vocabulary, (batch, min(steps, self.max_tokens)), device=device)


class HFAudioModel(PretrainedEncoder):
    """A speech model on waveforms (B, S) with a sample mask; its frames (B, F) get their own mask."""

    def __init__(self, d_model: int, dropout: float, settings: PretrainedConfig):
        from mmolre_cli.data.audio import load_speech_model

        if settings.audio is None:
            raise UsageError("model.pretrained.audio: the hf_audio encoder needs a local model directory")
        backbone, self.feature_extractor = load_speech_model(settings.audio, "--encoder hf_audio")
        super().__init__(backbone, d_model, dropout, settings)
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        # Models whose feature encoder normalises over a whole clip (wav2vec 2.0 base) must not see a mask:
        # their feature extractors say so, and zero padding is what they were trained with.
        self.masked = bool(getattr(self.feature_extractor, "return_attention_mask", True))

    def inputs(self, split: Split, audio_rate: int | None) -> tuple[list[Tensor], Tensor]:
        """One input waveform per clip (the feature extractor's, e.g. normalised), unpadded, and lengths (N,)."""
        if split.raw_audio is None:
            raise DataError(
                "raw_audio: the hf_audio encoder needs waveforms (prepare the data with `prepare csv --audio-dir`)"
            )
        if audio_rate != self.sampling_rate:
            raise DataError(
                f"raw_audio: waveforms at {audio_rate} Hz, but the hf_audio model takes {self.sampling_rate} Hz "
                "(prepare the data with this model as --audio-model)"
            )
        waves = [
            torch.from_numpy(
                np.asarray(self.feature_extractor(w, sampling_rate=self.sampling_rate)["input_values"][0], np.float32)
            )
            for w in split.raw_audio
        ]
        return waves, torch.tensor([len(w) for w in waves])

    def forward(self, waves: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        attention = mask.long() if self.masked else None
        hidden = self.backbone(input_values=waves * mask, attention_mask=attention).last_hidden_state
        frames = self.backbone._get_feat_extract_output_lengths(mask.sum(1))
        frame_mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < frames[:, None]
        return self.output(hidden, frame_mask)

    def random_input(self, batch: int, steps: int, device: torch.device | str) -> Tensor:
        """Random waveforms (batch, samples) of about ``steps`` frames, for profiling."""
        stride = int(np.prod(self.backbone.config.conv_stride))
        return torch.randn(batch, steps * stride, device=device)


def is_pretrained(encoder: nn.Module) -> bool:
    """Whether ``encoder`` runs on raw input (has ``inputs``) rather than on pre-extracted features."""
    return isinstance(encoder, PretrainedEncoder)


def takes_pretrained(factory: Callable[..., Any]) -> bool:
    """Whether an encoder ``factory`` takes ``pretrained`` (model directories): it runs a pretrained model on
    raw input, has no smoke check on random features, and is built with ``model.pretrained``."""
    return "pretrained" in inspect.signature(factory).parameters
