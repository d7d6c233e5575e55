"""Both implementations of the Gram matrices behind the step rewards (step_level): the
compiled `_gram` and the torch path used where it was not built."""

from __future__ import annotations

import pytest

from ireasoner.rewards import step_level


@pytest.fixture(scope="module", params=["compiled", "torch"])
def gram_path(request):
    """Runs a module's tests once per implementation. Module-scoped: hypothesis refuses
    function-scoped fixtures around @given tests."""
    compiled = step_level._gram
    if request.param == "compiled" and compiled is None:
        pytest.skip("ireasoner.rewards._gram is not built (no C compiler at install time)")
    if request.param == "torch":
        step_level._gram = None
    yield request.param
    step_level._gram = compiled
