"""mmolre: Multimodal Mixture of Low-Rank Experts for joint sentiment analysis and emotion recognition."""

__version__ = "0.1.0"

from mmolre_cli.plugins.hookspecs import hookimpl  # noqa: E402  (the one import plugin authors need)

__all__ = ["__version__", "hookimpl"]
