"""The read side of a run directory; never writes into the run.

    traces.format_traces         terminal view of questions, rollouts, steps and rewards
    report.write_report          the paper's diagnostic figures and an HTML page
    artifacts.iteration_table    content of the per-iteration Prefect table artifact
    artifacts.iteration_markdown content of the per-iteration Prefect markdown artifact
    queries                      the shared reads (NotInRun: the run/iteration/image is missing)

Import from the modules: only `report` loads matplotlib, so `traces` stays quick to start.
"""
