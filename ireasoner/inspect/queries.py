"""Reads of a run directory shared by traces, report and artifacts.

Every function reads only the files it needs, so looking at one iteration of a 2,500-iteration
run touches one file per table (its own, or the compacted chunk holding it), not 2,500.
"""

from __future__ import annotations

import polars as pl

from ireasoner.pipeline.run import require_current
from ireasoner.pipeline.tables import COMMON_TABLES
from ireasoner.trainers.ireasoner.tables import GROUPS, REWARDS, STEPS
from storage import RunStore

# What an empty read returns: the table's columns (a run may have no row of a table yet).
SCHEMAS = {table.name: table.schema for table in (*COMMON_TABLES, STEPS, REWARDS, GROUPS)}


class NotInRun(LookupError):
    """The run, iteration or image asked for is not in the run directory."""


def require_run(store: RunStore) -> None:
    """A run directory written with the artifact schema this version reads."""
    if not store.exists():
        raise NotInRun(f"{store.location} is not a run directory (no manifest.json)")
    require_current(store)


def latest_iteration(store: RunStore, name: str) -> int:
    require_run(store)
    iterations = store.table_iterations(name)
    if not iterations:
        raise NotInRun(f"{store.location} has no {name} table yet: no iteration has been scored")
    return iterations[-1]


def require_iteration(store: RunStore, name: str, iteration: int) -> None:
    require_run(store)
    if not store.has_table(name, iteration):
        have = store.table_iterations(name)
        span = f"{have[0]}..{have[-1]}" if have else "none"
        raise NotInRun(f"iteration {iteration} has no {name} table in {store.location} "
                       f"(iterations with one: {span})")


def read_iterations(store: RunStore, name: str, iterations: list[int]) -> pl.DataFrame:
    """Rows of table `name` for the given iterations (those without a table are left out)."""
    return scan(store, name, iterations).collect()


def scan(store: RunStore, name: str, iterations: list[int] | None = None) -> pl.LazyFrame:
    return store.scan(name, iterations, schema=SCHEMAS.get(name))


def scored_rollouts(store: RunStore, iterations: list[int], rewards: str = "rewards"
                    ) -> pl.DataFrame:
    """The rows of the per-rollout rewards table `rewards` of `iterations`, with each
    rollout's finish reason and the advantage the Solver's update gave it (null before the
    update), by rollout."""
    keys = ["iteration", "image_index", "rollout_index"]
    finish = read_iterations(store, "rollouts", iterations).select(*keys, "finish_reason")
    on_policy = (pl.col("role") == "solver") & ~pl.col("off_policy").fill_null(False)
    advantage = (scan(store, "updates", iterations).filter(on_policy)
                 .select(pl.col("source_iteration").alias("iteration"), "image_index",
                         "rollout_index", "advantage").collect())
    return (read_iterations(store, rewards, iterations)
            .join(finish, on=keys, how="left")
            .join(advantage, on=keys, how="left")
            .sort(*keys))


def image_iterations(store: RunStore, image_id: str) -> list[int]:
    """The iterations in which `image_id` was asked about."""
    require_run(store)
    found = (scan(store, "questions").filter(pl.col("image_id") == image_id)
             .select("iteration").unique().collect())
    if found.is_empty():
        raise NotInRun(f"image {image_id!r} does not appear in {store.location}")
    return sorted(found["iteration"].to_list())


def iteration_summary(store: RunStore) -> pl.DataFrame:
    """One row per scored iteration: the paper's diagnostics (Fig. 3, 5, 6), means over the
    iteration's questions (groups table) and rollouts (rewards table)."""
    per_group = scan(store, "groups").group_by("iteration").agg(
        pl.col("proposer_reward", "entropy", "group_fraction", "density", "lam",
               "mean_step_similarity", "valid_positions", "mean_steps").mean())
    per_rollout = scan(store, "rewards").group_by("iteration").agg(
        pl.col("r_ans", "r_step", "r_sol").mean(),
        pl.col("answer").is_not_null().mean().alias("answer_rate"),
        # |G| averaged over the iteration's questions (= group_fraction x N).
        (pl.col("in_group").sum() / pl.col("image_index").n_unique()).alias("group_size"))
    return per_group.join(per_rollout, on="iteration", how="full", coalesce=True) \
        .sort("iteration").collect()


def image_steps(store: RunStore, image_id: str) -> pl.DataFrame:
    """Every parsed step of every rollout about `image_id`, across the run. The steps table has
    no image id: the keys come from the questions table, then only those iterations' steps
    files are read."""
    require_run(store)
    keys = (scan(store, "questions").filter(pl.col("image_id") == image_id)
            .select("iteration", "image_index").collect())
    steps = read_iterations(store, "steps", keys["iteration"].to_list())
    return (steps.join(keys, on=["iteration", "image_index"], how="semi")
            .sort("iteration", "image_index", "rollout_index", "step_index"))
