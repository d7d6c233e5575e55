"""Prefect flows and the `ireasoner` command line that starts them: orchestration only. The
stages they run live in ireasoner.pipeline and ireasoner.trainers."""
