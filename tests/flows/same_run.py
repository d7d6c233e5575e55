"""Whether a resumed (or repaired) run ended where an uninterrupted one did: every table row for
row (wall times aside) and the final adapters bit for bit."""

from pathlib import Path

from safetensors.numpy import load_file

from storage import RunStore


def adapter_weights(run: Path, iteration: int, role: str) -> dict:
    path = run / "checkpoints" / f"iter-{iteration:06d}" / "adapters" / role
    return load_file(str(path / "adapter_model.safetensors"))


def assert_same_run(run: Path, reference: Path, tables, iterations: int) -> None:
    for table in tables:
        for iteration in range(1, iterations + 1):
            got = RunStore(run).read_table(table, iteration)
            want = RunStore(reference).read_table(table, iteration)
            if table == "metrics":  # wall times differ
                timed = [c for c in want.column_names if c.startswith("seconds_")]
                got, want = got.drop(timed), want.drop(timed)
            assert got.equals(want), f"{table} of iteration {iteration} differs"
    for role in ("solver", "proposer"):
        got, want = (adapter_weights(r, iterations, role) for r in (run, reference))
        assert got.keys() == want.keys()
        assert all((got[k] == want[k]).all() for k in want), f"{role} adapter differs"
