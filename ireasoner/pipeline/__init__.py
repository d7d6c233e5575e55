"""The machinery every trainer runs on: the run context (config, store, models), the stage
runner that makes resume work, the stages trainers share (prepare, propose, solve, evaluate),
the common tables and metrics, and opening and migrating a run. It knows nothing of Prefect
(flows/ orchestrates) and nothing of a particular trainer (ireasoner.trainers)."""
