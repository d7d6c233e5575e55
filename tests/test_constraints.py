"""The constraints files and pyproject.toml must not drift apart: every exact pin in
requirements/{ci,gpu}-constraints.txt satisfies what pyproject.toml declares for that package
(otherwise setup.sh cannot resolve), and the [vllm] extra names the release gpu-constraints
is built around."""

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = ["requirements/ci-constraints.txt", "requirements/gpu-constraints.txt"]


def _declared() -> dict[str, list[Requirement]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [
        line for extra in project["optional-dependencies"].values() for line in extra]
    declared: dict[str, list[Requirement]] = {}
    for line in lines:
        requirement = Requirement(line)
        declared.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    return declared


def _pins(path: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            pins[canonicalize_name(requirement.name)] = specs[0].version
    return pins


@pytest.mark.parametrize("path", CONSTRAINTS)
def test_every_pin_satisfies_pyproject(path):
    declared = _declared()
    pins = _pins(path)
    assert pins, f"{path} has no exact pins"
    clashes = [f"{name}=={version} vs {req}" for name, version in pins.items()
               for req in declared.get(name, []) if version not in req.specifier]
    assert not clashes, f"{path} pins outside pyproject.toml's ranges: {clashes}"


def test_vllm_extra_names_the_gpu_constraints_release():
    (vllm,) = _declared()["vllm"]
    assert str(vllm.specifier) == f"=={_pins('requirements/gpu-constraints.txt')['vllm']}"
