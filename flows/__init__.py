"""Prefect flows: orchestration only. The stages they run live in ireasoner.stages."""
