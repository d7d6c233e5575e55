"""Where the project's log messages go: the console (`ireasoner -v/-q`) and the Prefect UI.

Prefect's logging config sends only its own loggers to the UI and leaves the root logger at
WARNING, so the project's INFO messages (`ireasoner.*`, `storage.*`: the stages, the per-iteration
summary, evaluation and compaction) were shown nowhere. The CLI sets the console up
(`configure_console`); each flow run hands the project's loggers to Prefect's API handler
(`send_project_logs_to_prefect`), whoever started it (the CLI, `serve`, a worker).
"""

from __future__ import annotations

import logging
import os
import sys

PROJECT_LOGGERS = ("ireasoner", "storage")
LEVELS = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}
FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"


class ConsoleHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirect). Its name
    has no leading underscore: Prefect then keeps it as the root logger's handler."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


class _QuietTaskRuns(logging.Filter):
    """Prefect logs each task run's start and end state (five tasks an iteration); the console
    shows them with -v only (the UI keeps them: its handler is not filtered). Records marked
    `console=False` (the summary lines a progress bar shows) stay off the console too. An
    expected error (a full disk, a refused resume: the CLI prints it as one line) keeps its
    message and loses its traceback, except with -v."""

    def __init__(self) -> None:
        super().__init__()
        self.verbosity = 0
        self.expected: tuple[type[BaseException], ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "console", True):  # shown by the progress bar already
            return False
        if (record.exc_info and isinstance(record.exc_info[1], self.expected)
                and self.verbosity <= 0):
            # The console handler is the root's, the last to see the record: the UI's handler
            # (on Prefect's loggers) has logged the traceback already.
            record.exc_info, record.exc_text = None, None
        if record.name.startswith("prefect.task_runs") and record.levelno < logging.WARNING:
            return self.verbosity > 0
        return True


def configure_console(verbosity: int,
                      expected: tuple[type[BaseException], ...] = ()) -> None:
    """-1 (-q): warnings and errors only; 0: the project's INFO messages and progress; 1 (-v):
    DEBUG messages and Prefect's task-run lines. `expected`: errors logged without their
    traceback below -v. Idempotent (tests call the CLI in-process)."""
    level = LEVELS[max(-1, min(1, verbosity))]
    if verbosity < 0:
        _no_hub_progress_bars()
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(level)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, ConsoleHandler)), None)
    if handler is None:
        # Prefect's own console handler (there when Prefect was imported first) writes to the
        # stream of its time, which a test's capture may have closed since: ours replaces it.
        for stale in [h for h in root.handlers if type(h).__name__ == "PrefectConsoleHandler"]:
            root.removeHandler(stale)
        handler = ConsoleHandler()
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    handler.setLevel(level)
    quiet = next((f for f in handler.filters if isinstance(f, _QuietTaskRuns)), None)
    if quiet is None:
        quiet = _QuietTaskRuns()
        handler.addFilter(quiet)
    quiet.verbosity = verbosity
    quiet.expected = expected


def _no_hub_progress_bars() -> None:
    """transformers' loading bars and the hub's download bars: the environment variable for
    what imports them later, their switches for what already has (the CLI's imports may)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


def send_project_logs_to_prefect() -> None:
    """Inside a flow run: the project's loggers also reach the run's logs in the UI, at INFO
    unless the console set another level."""
    from prefect.logging.handlers import APILogHandler

    for name in PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        if not any(isinstance(h, APILogHandler) for h in logger.handlers):
            logger.addHandler(APILogHandler())
