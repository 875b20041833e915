"""nn.Module wrappers."""

from ropekit.modules.rotary import RotaryEmbedding

__all__ = ["RotaryEmbedding"]
