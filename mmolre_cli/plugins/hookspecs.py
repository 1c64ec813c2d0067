"""The hook specifications: one hook per component kind, each handed a ``register`` callback.

A plugin implements any of these with ``@mmolre_cli.hookimpl`` and calls
``register(name, factory, description="")`` once per component it provides. What each kind's
factory must build is described in :mod:`mmolre_cli.plugins.contracts`.
"""

import pluggy

PROJECT = "mmolre"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_encoders(register):
    """Register unimodal encoders: ``factory(input_dim, d_model, dropout)`` → (B, T, D) → (B, T, d)."""


@hookspec
def register_experts(register):
    """Register expert types: ``factory(d_model, n_experts, rank, dropout)`` → a bank of n experts."""


@hookspec
def register_routers(register):
    """Register routers: ``factory(d_model, n_experts, topk)`` → pooled (B, d) → :class:`Route`."""


@hookspec
def register_fusions(register):
    """Register fusions: ``factory(d_model, modalities, tasks, dropout)`` → one vector per task."""


@hookspec
def register_text_encoders(register):
    """Register text encoders: ``factory(model)`` → ``encode(texts, seq_len)`` → features (N, T, D), lengths (N,)."""


@hookspec
def register_audio_encoders(register):
    """Register audio encoders: ``factory(model)`` → ``sampling_rate`` and ``encode(wave)`` → frames (F, D)."""
