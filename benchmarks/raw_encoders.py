"""Training-step time of the fine-tuned path (hf_text + hf_audio inside MMoLRE, on token ids and waveforms)
against the frozen-feature path (linear encoders on the same models' hidden states), side by side.

    python benchmarks/raw_encoders.py [--sizes tiny,base] [--batch 4] [--seconds 2] [--repeats 3]

Both pretrained models are built from configs with random weights (nothing is downloaded): ``tiny`` is a
2-layer width-32 RoBERTa and Data2VecAudio, ``base`` RoBERTa-base and Data2Vec-audio-base (12 layers,
width 768, 125 M and 94 M parameters). MMoLRE has d = 768 at both sizes, 4 shared experts of rank 32,
top-2, 2 blocks. The frozen path gets features of exactly the steps the fine-tuned one produces (text
tokens, audio frames), so the ratio is the backbones' cost. Steps are timed interleaved (AdamW update
included) and the median is reported.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _common import interleaved, machine, print_table

from mmolre_cli.config import ExpertConfig, ModelConfig, PretrainedConfig
from mmolre_cli.data.shapes import DataShapes
from mmolre_cli.model import DataSignature, multitask_loss
from mmolre_cli.model.build import build_model
from mmolre_cli.plugins import load_registry
from mmolre_cli.profiling.flops import random_batch
from mmolre_cli.training.evaluate import forward

TEXT_TOKENS = 50
SIZES = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    "base": {},  # the configs' defaults are the base models
}
TINY_CONV = {"conv_dim": (32, 32), "conv_stride": (5, 64), "conv_kernel": (10, 64), "num_conv_pos_embeddings": 16}


def save_models(size: str, root: Path) -> PretrainedConfig:
    """A random RoBERTa (with a word-piece tokenizer) and Data2VecAudio (with a feature extractor) of
    ``size``, saved under ``root``; 320 samples per audio frame at both sizes."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    text, audio = root / f"text-{size}", root / f"audio-{size}"
    text.mkdir()
    (text / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(text / "vocab.txt"), model_max_length=512).save_pretrained(text)
    extra = {"vocab_size": 1000, "max_position_embeddings": 514} if size == "tiny" else {}
    transformers.RobertaModel(transformers.RobertaConfig(**SIZES[size], **extra)).save_pretrained(text)
    conv = TINY_CONV if size == "tiny" else {}
    speech = transformers.Data2VecAudioConfig(**SIZES[size], **conv, layerdrop=0.0, mask_time_prob=0.0)
    transformers.Data2VecAudioModel(speech).save_pretrained(audio)
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(audio)
    return PretrainedConfig(text=str(text), audio=str(audio))


def models(pretrained: PretrainedConfig, frames: int, emotions: int = 6) -> tuple[dict, DataShapes]:
    """The fine-tuned and the frozen-feature MMoLRE, and the shapes of their inputs."""
    import transformers

    registry = load_registry()
    width = {m: transformers.AutoConfig.from_pretrained(getattr(pretrained, m)).hidden_size for m in ("text", "audio")}
    shapes = DataShapes("bench", width, {"text": TEXT_TOKENS, "audio": frames}, ["e"] * emotions, True)
    signature = DataSignature(width, shapes.emotions)
    base = {"d_model": 768, "modalities": ["text", "audio"], "experts": ExpertConfig(4, 32), "pretrained": pretrained}
    built = {}
    for name, encoders in (("fine-tuned", {"text": "hf_text", "audio": "hf_audio"}), ("frozen", {})):
        torch.manual_seed(0)
        built[name] = build_model(ModelConfig(**base, encoders=encoders), signature, registry)
    return built, shapes


def step_of(model: torch.nn.Module, shapes: DataShapes, batch: int, device: torch.device, precision: str):
    """One training step (forward in ``precision``, loss, backward, AdamW update) on a fixed random batch."""
    inputs = random_batch(shapes, model.modalities, batch, device, model.encoders)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        output = forward(model, inputs, precision)
        loss, _ = multitask_loss(output, inputs.sentiment, inputs.emotion, model.config, None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(size: str, device: torch.device, *, batch: int, seconds: float, repeats: int, warmup: int,
            precision: str = "fp32", checkpointing: bool = False) -> dict:  # fmt: skip
    """Median training-step seconds of both paths at ``size``, and their parameter counts."""
    with tempfile.TemporaryDirectory(prefix="mmolre-bench-") as root:
        pretrained = save_models(size, Path(root))
        pretrained.gradient_checkpointing = checkpointing
        frames = int(seconds * 50)  # 320 samples per frame at 16 kHz
        built, shapes = models(pretrained, frames)
    steps = {}
    for name, model in built.items():
        model.to(device).train()
        steps[name] = step_of(model, shapes, batch, device, precision)
    medians = interleaved(steps, device, repeats, warmup)
    parameters = {name: sum(p.numel() for p in model.parameters()) for name, model in built.items()}
    return {"size": size, "seconds": medians, "parameters": parameters}


def print_results(results: list[dict]) -> None:
    header = ["size", "fine-tuned params", "frozen params", "fine-tuned ms", "frozen ms", "fine-tuned/frozen"]
    rows = []
    for r in results:
        tuned, frozen = r["seconds"]["fine-tuned"], r["seconds"]["frozen"]
        params = [f"{r['parameters'][name] / 1e6:.1f} M" for name in ("fine-tuned", "frozen")]
        rows.append([r["size"], *params, f"{tuned * 1e3:.0f}", f"{frozen * 1e3:.0f}", f"{tuned / frozen:.1f}x"])
    print_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,base")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0, help="audio per clip (50 frames per second)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"machine: {machine(device)}")
    print(f"batch {args.batch}, text {TEXT_TOKENS} tokens, audio {args.seconds:g} s; MMoLRE d=768, fp32")
    results = [
        measure(size, device, batch=args.batch, seconds=args.seconds, repeats=args.repeats, warmup=args.warmup)
        for size in args.sizes.split(",")
    ]
    print_results(results)


if __name__ == "__main__":
    main()
