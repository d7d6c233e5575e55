"""iReasoner: self-evolving multimodal post-training on unlabeled images."""

__version__ = "0.1.0"
