"""The trainers: one folder each, declaring its stages, tables and metrics in a `TrainerSpec`
(ireasoner.pipeline.trainer); `registry` maps `trainer.kind` to it."""
