"""The iReasoner trainer's own tables and metrics columns (beside pipeline.tables')."""

from __future__ import annotations

import pyarrow as pa

from ireasoner.pipeline.tables import KEY, Table

# One row per parsed step of a rollout (at most max_steps per rollout).
STEPS = Table("steps", pa.schema(KEY + [
    pa.field("rollout_index", pa.int32(), nullable=False),
    pa.field("step_index", pa.int32(), nullable=False),   # 1-based, as in the paper
    pa.field("text", pa.string()),
    pa.field("similarity", pa.float64()),       # r_ij (or c_ij when signed); null off-group
    pa.field("loo_similarity", pa.float64()),   # S_ij, leave-one-out; null when undefined
]))

# One row per rollout: its parse and its rewards (the advantage is the update's: updates table).
REWARDS = Table("rewards", pa.schema(KEY + [
    pa.field("rollout_index", pa.int32(), nullable=False),
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("parse_status", pa.string()),
    pa.field("answer_raw", pa.string()),
    pa.field("answer", pa.string()),            # normalised; null when unparsable
    pa.field("num_steps", pa.int32()),
    pa.field("steps_total", pa.int32()),
    pa.field("words_before_answer", pa.int32()),
    pa.field("in_group", pa.bool_()),
    pa.field("r_ans", pa.float64()),
    pa.field("r_step", pa.float64()),
    pa.field("r_sol", pa.float64()),
]))

# One row per question: group statistics and the Proposer's reward.
GROUPS = Table("groups", pa.schema(KEY + [
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("question", pa.string()),
    pa.field("dominant_answer", pa.string()),
    pa.field("valid_answers", pa.int32()),
    pa.field("entropy", pa.float64()),
    pa.field("density", pa.float64()),
    pa.field("group_fraction", pa.float64()),
    pa.field("proposer_reward", pa.float64()),
    pa.field("lam", pa.float64()),
    pa.field("valid_positions", pa.int32()),
    pa.field("mean_steps", pa.float64()),
    pa.field("mean_step_similarity", pa.float64()),
    pa.field("disagreement", pa.list_(pa.float64())),   # D_j, j = 1..J_max (null: undefined)
]))

# Every diagnostic of spec §2 (means over the iteration) and the Proposer's update.
METRICS_FIELDS = tuple(
    [pa.field(name, pa.float64()) for name in (
        "steps_rate", "mean_steps", "entropy", "group_fraction", "proposer_reward",
        "step_similarity", "valid_positions", "r_ans", "r_step", "r_sol", "lam",
        "solver_baseline", "proposer_loss", "proposer_pg_loss", "proposer_kl", "proposer_beta",
        "proposer_baseline", "proposer_grad_norm", "proposer_examples")]
    + [pa.field("proposer_updated", pa.bool_()),
       pa.field("disagreement", pa.list_(pa.float64()))])
