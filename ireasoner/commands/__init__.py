"""What the `ireasoner` verbs do besides training (flows/cli.py parses the arguments): rescore,
export, evaluate one checkpoint, migrate."""
