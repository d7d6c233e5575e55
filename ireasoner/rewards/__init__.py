"""Intrinsic rewards of iReasoner (spec §2-3): pure functions over arrays, no model or I/O."""

from ireasoner.rewards.config import RewardConfig
from ireasoner.rewards.schedule import lambda_at, proposer_reward
from ireasoner.rewards.scoring import GroupScores, score_batch, score_group

__all__ = ["GroupScores", "RewardConfig", "lambda_at", "proposer_reward", "score_batch",
           "score_group"]
