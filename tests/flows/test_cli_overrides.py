"""`--set` values are read by their key's type: a path with ` #` or digits stays a path."""

import yaml

from flows.cli import main


def _resolved(capsys, *argv: str) -> dict:
    assert main(["config", *argv]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_config_set_keeps_a_run_dir_with_a_hash_or_digits_verbatim(capsys):
    assert _resolved(capsys, "--set", "storage.run_dir=runs/exp #2")["storage"]["run_dir"] == (
        "runs/exp #2")
    assert _resolved(capsys, "--set", "storage.run_dir=2024")["storage"]["run_dir"] == "2024"


def test_config_set_of_an_unknown_key_is_one_line_naming_it(capsys):
    assert main(["config", "--set", "rewards.gamm=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ireasoner: error: unknown key 'rewards.gamm'; allowed in rewards:")
