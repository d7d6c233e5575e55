"""lmms-eval tasks MathVista and MathVerse scored by rules (`answers.py` here), with
no LLM judge. This directory is their `--include_path`."""

from pathlib import Path

MATH_RULE_TASKS = frozenset({"mathvista_testmini_rules", "mathverse_testmini_rules"})
INCLUDE_DIR = Path(__file__).resolve().parent
