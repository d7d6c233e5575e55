"""`python -m ireasoner.eval.lmms_entry ARGS`: lmms-eval's command line, made runnable here.

lmms-eval 0.7.3 patches `filelock._api`, a module filelock 4.3 does not have, at the start of
every evaluation; the patch only makes locks re-entrant across two lock classes, so where the
module is missing it is skipped rather than letting every evaluation fail. With a filelock that has
it, lmms-eval runs unchanged.
"""

from __future__ import annotations

import importlib.util
import sys


def main() -> None:
    if importlib.util.find_spec("filelock._api") is None:
        from lmms_eval import evaluator

        evaluator._enable_reentrant_filelocks._patched = True
    from lmms_eval.cli.dispatch import main as lmms_main

    sys.argv[0] = "lmms_eval"
    lmms_main()


if __name__ == "__main__":
    main()
