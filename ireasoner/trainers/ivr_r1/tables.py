"""The IVR-R1 trainer's own tables and metrics columns (beside pipeline.tables')."""

from __future__ import annotations

import pyarrow as pa

from ireasoner.pipeline.tables import KEY, SAMPLED, Table

# One row per on-policy rollout, its reward and the label it was scored against.
IVR_REWARDS = Table("ivr_rewards", pa.schema(KEY + [
    pa.field("rollout_index", pa.int32(), nullable=False),
    pa.field("image_id", pa.string(), nullable=False),
    pa.field("label", pa.string()),             # null: no label (pseudo with no answer)
    pa.field("label_source", pa.string(), nullable=False),   # dataset | pseudo | none
    pa.field("answer_raw", pa.string()),        # last complete \boxed{} content
    pa.field("answer", pa.string()),            # normalised; null when unparsable
    pa.field("r_format", pa.float64()),
    pa.field("r_acc", pa.float64()),
    pa.field("reward", pa.float64()),
    pa.field("eroded", pa.bool_()),             # reward < tau_c with a label: critiqued
]))

# One critique per eroded rollout, linked by (iteration, image_index, rollout_index).
CRITIQUES = Table("critiques", pa.schema(KEY + [
    pa.field("rollout_index", pa.int32(), nullable=False),
    pa.field("image_id", pa.string(), nullable=False),
] + SAMPLED))

# One row per rectification attempt of an eroded rollout (round 1..M).
RECTIFIED = Table("rectified", pa.schema(KEY + [
    pa.field("rollout_index", pa.int32(), nullable=False),   # the source rollout
    pa.field("round", pa.int32(), nullable=False),
    pa.field("image_id", pa.string(), nullable=False),
] + SAMPLED + [
    pa.field("answer", pa.string()),
    pa.field("r_format", pa.float64()),
    pa.field("r_acc", pa.float64()),
    pa.field("reward_before", pa.float64()),    # the attempt it rewrote (round 1: the rollout)
    pa.field("reward", pa.float64()),
    pa.field("kept", pa.bool_(), nullable=False),   # reward >= tau_c, within K_r per group
]))

METRICS_FIELDS = tuple(
    [pa.field(name, pa.float64()) for name in (
        "r_format", "r_acc", "ivr_reward", "erosion_rate", "critiques", "rectified_kept",
        "shaped_token_share")]
    + [pa.field("rectify_success", pa.list_(pa.float64()))])   # kept / attempted, per round
