"""IVR-R1 (spec §6) as a second trainer on the pipeline: rewards against labels (or pseudo
labels), critiques of eroded rollouts, rectification, and GRPO plus policy shaping
(`ireasoner.policy.grpo`) on the Solver. `spec.SPEC` registers it."""
