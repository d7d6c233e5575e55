"""The backbone: `load_backbone` (hub id, local checkpoint, or "tiny") and the tiny Qwen2.5-VL."""

from ireasoner.model.loading import Backbone, load_backbone

__all__ = ["Backbone", "load_backbone"]
