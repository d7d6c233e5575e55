"""IVR-R1 (spec §6) as a second trainer on the iReasoner pipeline: rewards, prompts, labels and
the stages localise (critiques) and rectify (re-reasoning), trained with GRPO plus policy
shaping (`ireasoner.policy.grpo`)."""
