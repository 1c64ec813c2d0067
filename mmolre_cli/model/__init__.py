"""The MMoLRE model, one module per concept: encoders, experts, routers, UniTSE, fusion, heads, loss."""

from mmolre_cli.model.loss import emotion_pos_weight, multitask_loss
from mmolre_cli.model.mmolre import DataSignature, MMoLRE, ModelOutput

__all__ = ["MMoLRE", "DataSignature", "ModelOutput", "emotion_pos_weight", "multitask_loss"]
