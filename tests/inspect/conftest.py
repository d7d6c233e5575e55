"""A small run directory built by hand: 3 iterations, 2 images, N = 3 rollouts.

Image 0 has a dominant group of two; image 1's rollouts have no parsable answer (the last has
no steps either); in the last iteration image 1's question is skipped. Texts are unicode; off-group similarities are null.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pytest

from ireasoner.config import Config, SolverConfig
from ireasoner.pipeline.run import open_run
from ireasoner.pipeline.tables import QUESTIONS, ROLLOUTS, UPDATES
from ireasoner.trainers.ireasoner.tables import GROUPS, REWARDS, STEPS
from ireasoner.trainers.registry import trainer_spec
from storage import RunStore, compact_run

IREASONER = trainer_spec("ireasoner")
TABLES = {table.name: table for table in (QUESTIONS, ROLLOUTS, REWARDS, STEPS, GROUPS, UPDATES,
                                          IREASONER.metrics)}

N = 3
QUESTION = "Combien de côtés a ce polygone, en comptant ceux cachés derrière le grand triangle ? 三角形 ≥ 3"
ANSWERS = ["3", "3", "4"]
NAN = math.nan


def _question(t: int, k: int) -> dict:
    skipped = t == 3 and k == 1
    return dict(iteration=t, image_index=k, image_id=f"img-{k}", image_sha256="0" * 64,
                source_ref=None, prompt="ask", raw_output="<q>??" if skipped else QUESTION,
                question=None if skipped else QUESTION,
                parse_status="skipped:no_question" if skipped else "ok",
                proposer_logprob=-3.0, token_ids=[1, 2, 3], num_tokens=12, finish_reason="stop", seed=t * 10 + k,
                rationale=None if skipped else "needs the bars compared")


def _rollout(t: int, k: int, i: int) -> dict:
    return dict(iteration=t, image_index=k, rollout_index=i, image_id=f"img-{k}", seed=i,
                text="<think>Step 1: ...</think>", token_ids=[4, 5], num_tokens=40,
                finish_reason="length" if k == 1 else "stop", logprob_sum=-20.0,
                decode_errors=False)


def _reward(t: int, k: int, i: int) -> dict:
    valid = k == 0
    in_group = valid and i < 2
    return dict(iteration=t, image_index=k, rollout_index=i, image_id=f"img-{k}",
                parse_status="ok" if valid else "no_answer",
                answer_raw=ANSWERS[i] if valid else None, answer=ANSWERS[i] if valid else None,
                num_steps=_step_count(k, i), steps_total=_step_count(k, i),
                words_before_answer=30, in_group=in_group,
                r_ans=0.75 if in_group else (0.46 if valid else 0.0),
                r_step=0.5 if in_group else 0.0, r_sol=0.1 * t + 0.05 * i)


def _update(t: int, k: int, i: int) -> dict:
    """The Solver's update of the rollout: advantage r_sol - b."""
    r_sol = 0.1 * t + 0.05 * i
    return dict(iteration=t, role="solver", step=t, source_iteration=t, image_index=k,
                rollout_index=i, off_policy=False, reward=r_sol, baseline=r_sol - (0.1 * t - 0.2),
                advantage=0.1 * t - 0.2, kl=0.01, beta=1e-3, tokens=40, nll=1.5, grad_norm=0.3)


def _steps(t: int, k: int, i: int) -> list[dict]:
    in_group = k == 0 and i < 2
    return [dict(iteration=t, image_index=k, rollout_index=i, step_index=j,
                 text=f"Étape {j} du raisonnement: on compte les côtés → {j} (rollout {i})",
                 similarity=0.9 - 0.1 * j if in_group else NAN,
                 loo_similarity=(0.8 if j == 1 else NAN) if in_group else NAN)
            for j in range(1, _step_count(k, i) + 1)]


def _step_count(k: int, i: int) -> int:
    return 0 if (k, i) == (1, 2) else 2


def _group(t: int, k: int) -> dict:
    valid = k == 0
    return dict(iteration=t, image_index=k, image_id=f"img-{k}", question=QUESTION,
                dominant_answer="3" if valid else None, valid_answers=N if valid else 0,
                entropy=0.6365 if valid else 0.0, density=0.75 if valid else 0.0,
                group_fraction=2 / 3 if valid else 0.0, proposer_reward=0.5 if valid else 0.0,
                lam=0.0, valid_positions=2 if valid else 0, mean_steps=2.0,
                mean_step_similarity=0.75 if valid else NAN,
                disagreement=[0.2, NAN] + [NAN] * 6 if valid else [NAN] * 8)


def _metrics(t: int) -> dict:
    schema = IREASONER.metrics.schema
    row = {f.name: None if pa.types.is_list(f.type) else 0.0 for f in schema}
    row.update(iteration=t, solver_loss=0.25, solver_kl=0.01, solver_beta=1e-3,
               proposer_updated=False, disagreement=[0.2] + [NAN] * 7, proposer_loss=NAN)
    return row


def build_run(root: Path, iterations: int = 3) -> RunStore:
    store = RunStore(root)
    open_run(store, Config(solver=SolverConfig(num_rollouts=N)), trainer_spec, resume=False)
    for t in range(1, iterations + 1):
        images = [k for k in (0, 1) if not (t == 3 and k == 1)]
        pairs = [(k, i) for k in images for i in range(N)]
        rows = {"questions": [_question(t, k) for k in (0, 1)],
                "rollouts": [_rollout(t, *p) for p in pairs],
                "rewards": [_reward(t, *p) for p in pairs],
                "steps": [s for p in pairs for s in _steps(t, *p)],
                "groups": [_group(t, k) for k in images],
                "updates": [_update(t, *p) for p in pairs],
                "metrics": [_metrics(t)]}
        for name, table_rows in rows.items():
            store.write_table(name, t, TABLES[name].build(table_rows))
        for stage, seconds in (("propose", 1.5), ("solve", 12.25), ("score", 0.5)):
            store.mark_done(t, stage, {"seconds": seconds})
    return store


def add_all_skipped_iteration(store: RunStore, t: int) -> None:
    """An iteration whose every question was skipped: empty rollouts/rewards/steps/groups."""
    rows = [dict(_question(t, k), question=None, parse_status="skipped:no_question")
            for k in (0, 1)]
    store.write_table("questions", t, QUESTIONS.build(rows))
    for name in ("rollouts", "rewards", "steps", "groups"):
        store.write_table(name, t, TABLES[name].build([]))


# Built once: the inspect functions only read the run.
@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    return build_run(tmp_path_factory.mktemp("inspect") / "run")


@pytest.fixture(scope="session")
def compacted_run(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """`run` with its 3 iterations complete, 1 and 2 compacted into chunk files, 3 left as is."""
    store = build_run(tmp_path_factory.mktemp("inspect") / "compacted")
    for t in (1, 2, 3):
        store.mark_done(t, "update", {})
    compact_run(store, 2)
    assert (store.root / "steps" / "000001-000002.parquet").is_file()
    return store


@pytest.fixture(scope="session")
def one_iteration_run(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    return build_run(tmp_path_factory.mktemp("inspect") / "run1", iterations=1)


@pytest.fixture(scope="session")
def run_ending_in_skips(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    """Iteration 1 as in `run`, then an iteration 2 with every question skipped."""
    store = build_run(tmp_path_factory.mktemp("inspect") / "skips", iterations=1)
    add_all_skipped_iteration(store, 2)
    return store


@pytest.fixture
def question() -> str:
    return QUESTION
