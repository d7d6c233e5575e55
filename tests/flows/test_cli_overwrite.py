"""`train --overwrite` never deletes what it should not: a run being trained, a directory that
is no run, a remote run nobody confirmed. (Each refusal comes before any training.)"""

from pathlib import Path

from flows.cli import main
from storage import RunStore, run_lock

MANIFEST = {"stages": ["update"]}


def test_overwrite_refuses_a_locked_run_and_a_directory_that_is_no_run(tmp_path, capsys):
    run = RunStore(tmp_path / "exp #2")
    run.open(MANIFEST, resume=False)
    with run_lock(run.root):
        assert main(["train", "--run-dir", str(run.root), "--overwrite"]) == 2
    assert "in use by another training" in capsys.readouterr().err
    assert run.exists()
    sibling = tmp_path / "exp"  # what YAML used to read "exp #2" as: must stay untouched
    sibling.mkdir()
    (sibling / "notes.txt").write_text("keep")
    assert main(["train", "--run-dir", str(sibling), "--overwrite"]) == 2
    assert "not a run" in capsys.readouterr().err
    assert (sibling / "notes.txt").read_text() == "keep"


def test_overwrite_at_a_url_lists_the_files_and_deletes_nothing_without_yes(tmp_path, capsys):
    url = f"file://{tmp_path / 'remote' / 'run'}"
    store = RunStore(url, mirror=tmp_path / "mirror")
    store.open(MANIFEST, resume=False)
    store.push()
    assert main(["train", "--run-dir", url, "--overwrite"]) == 2
    captured = capsys.readouterr()
    assert "--overwrite would delete 1 files" in captured.out and "manifest.json" in captured.out
    assert "nothing deleted" in captured.err and "--yes" in captured.err
    assert Path(tmp_path / "remote" / "run" / "manifest.json").is_file()
