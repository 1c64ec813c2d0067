"""The built-in components, registered through the same hooks as any third-party plugin.

Each factory imports its module when called, so listing plugins does not import torch.
"""

from mmolre_cli.plugins.hookspecs import hookimpl


def linear_encoder(input_dim: int, d_model: int, dropout: float):
    from mmolre_cli.model.encoders import LinearEncoder

    return LinearEncoder(input_dim, d_model, dropout)


def transformer_encoder(input_dim: int, d_model: int, dropout: float):
    from mmolre_cli.model.encoders import TransformerEncoder

    return TransformerEncoder(input_dim, d_model, dropout)


def lstm_encoder(input_dim: int, d_model: int, dropout: float):
    from mmolre_cli.model.encoders import LSTMEncoder

    return LSTMEncoder(input_dim, d_model, dropout)


def hf_text(input_dim: int, d_model: int, dropout: float, pretrained=None):
    from mmolre_cli.config import PretrainedConfig
    from mmolre_cli.model.pretrained import HFTextModel

    return HFTextModel(d_model, dropout, pretrained or PretrainedConfig())


def hf_audio(input_dim: int, d_model: int, dropout: float, pretrained=None):
    from mmolre_cli.config import PretrainedConfig
    from mmolre_cli.model.pretrained import HFAudioModel

    return HFAudioModel(d_model, dropout, pretrained or PretrainedConfig())


def lowrank_experts(d_model: int, n_experts: int, rank: int, dropout: float):
    from mmolre_cli.model.experts import ConvExpertBank

    return ConvExpertBank(d_model, n_experts, hidden=rank, dropout=dropout)


def dense_experts(d_model: int, n_experts: int, rank: int, dropout: float):
    from mmolre_cli.model.experts import ConvExpertBank

    return ConvExpertBank(d_model, n_experts, hidden=d_model, dropout=dropout)


def topk_router(d_model: int, n_experts: int, topk: int):
    from mmolre_cli.model.routers import TopKRouter

    return TopKRouter(d_model, n_experts, topk)


def noisy_topk_router(d_model: int, n_experts: int, topk: int):
    from mmolre_cli.model.routers import TopKRouter

    return TopKRouter(d_model, n_experts, topk, noisy=True)


def soft_router(d_model: int, n_experts: int, topk: int):
    from mmolre_cli.model.routers import SoftRouter

    return SoftRouter(d_model, n_experts, topk)


def uniform_router(d_model: int, n_experts: int, topk: int):
    from mmolre_cli.model.routers import UniformRouter

    return UniformRouter(d_model, n_experts, topk)


def task_adaptive_fusion(d_model: int, modalities: list[str], tasks: list[str], dropout: float):
    from mmolre_cli.model.fusion import TaskAdaptiveFusion

    return TaskAdaptiveFusion(d_model, modalities, tasks, dropout)


def concat_fusion(d_model: int, modalities: list[str], tasks: list[str], dropout: float):
    from mmolre_cli.model.fusion import ConcatFusion

    return ConcatFusion(d_model, modalities, tasks, dropout)


def gated_fusion(d_model: int, modalities: list[str], tasks: list[str], dropout: float):
    from mmolre_cli.model.fusion import GatedFusion

    return GatedFusion(d_model, modalities, tasks, dropout)


def hf_text_encoder(model: str | None):
    from mmolre_cli.data.text_encoders import HFTextEncoder

    return HFTextEncoder(model)


def hf_audio_encoder(model: str | None):
    from mmolre_cli.data.audio import HFAudioEncoder

    return HFAudioEncoder(model)


@hookimpl
def register_encoders(register):
    register("linear", linear_encoder, "linear projection (pre-extracted features)")
    register("transformer", transformer_encoder, "projection + one pre-norm Transformer layer")
    register("lstm", lstm_encoder, "bidirectional LSTM over valid frames")
    register("hf_text", hf_text, "Hugging Face text model on raw_text, trained with the model (extra: hf)")
    register("hf_audio", hf_audio, "Hugging Face speech model on raw_audio, trained with the model (extra: hf)")


@hookimpl
def register_experts(register):
    register("lowrank", lowrank_experts, "Conv1d(d→r, k3) → GELU → Conv1d(r→d, k1); ≈ 4·d·r params")
    register("dense", dense_experts, "the same at full width; ≈ 4·d² params")


@hookimpl
def register_routers(register):
    register("topk", topk_router, "top-k of N, softmax over the kept k")
    register("noisy_topk", noisy_topk_router, "top-k with learned Gaussian noise in training")
    register("soft", soft_router, "all experts, softmax weights (MMoE)")
    register("uniform", uniform_router, "all experts, equal weights (no router)")


@hookimpl
def register_fusions(register):
    register("task_adaptive", task_adaptive_fusion, "per-task query attention + modality gate")
    register("concat", concat_fusion, "pooled modalities concatenated and projected")
    register("gated", gated_fusion, "per-task softmax weights over pooled modalities")


@hookimpl
def register_text_encoders(register):
    register("hf", hf_text_encoder, "Hugging Face model and tokenizer from a local directory (extra: hf)")


@hookimpl
def register_audio_encoders(register):
    register(
        "hf",
        hf_audio_encoder,
        "Hugging Face speech model and feature extractor from a local directory (extras: hf, audio)",
    )
