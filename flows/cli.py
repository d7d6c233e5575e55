"""`ireasoner` command line. Each subcommand validates its config first, then imports what it
needs: a typo in a key fails in a second, before any model is loaded."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ireasoner.config import ConfigError, load_config, training_summary
from ireasoner.engines.server_process import ServerError
from ireasoner.inspect.queries import NotInRun
from storage import DiskFull, ResumeRefused, RunLocked
from storage.remote import UnsupportedURL


class OverwriteNotConfirmed(RuntimeError):
    """--overwrite at a URL without --yes (or a 'yes' typed in a terminal)."""


LOOPBACK_SETTINGS = ("PREFECT_SERVER_API_HOST", "PREFECT_RUNNER_SERVER_HOST")

EXPECTED_ERRORS = (ConfigError, ResumeRefused, RunLocked, FileExistsError, FileNotFoundError,
                   NotInRun, UnsupportedURL, ServerError, OverwriteNotConfirmed, DiskFull)


def main(argv: list[str] | None = None) -> int:
    # Prefect otherwise tries to send telemetry, which fails (and logs) on offline machines.
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Servers this process may start listen on loopback unless the environment says otherwise:
    # `prefect server start`'s API and the webserver of `ireasoner serve`'s runner. (Prefect's
    # ephemeral API, which `ireasoner train` starts, always binds 127.0.0.1.)
    for setting in LOOPBACK_SETTINGS:
        os.environ.setdefault(setting, "127.0.0.1")
    parser = _parser()
    args = parser.parse_args(argv)
    from flows.console import configure_console

    configure_console(getattr(args, "verbose", 0) - getattr(args, "quiet", 0), EXPECTED_ERRORS)
    try:
        return args.handler(args) or 0
    except EXPECTED_ERRORS as err:
        # Expected failures (a bad config, a refused resume, a locked or missing run) get one
        # clear line, not a traceback. Anything else is a bug and keeps its traceback.
        print(f"ireasoner: error: {err}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ireasoner", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train (or resume) a run, in-process")
    _config_args(train)
    train.add_argument("--run-dir", help="run directory (default: storage.run_dir)")
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace the run in --run-dir: a local run is moved aside to "
                      "RUN.replaced-<time>; at a URL its files are listed and deleted with --yes")
    train.add_argument("--force", action="store_true",
                       help="with --overwrite: replace a directory that holds no run too")
    train.add_argument("--yes", action="store_true",
                       help="with --overwrite at a URL: delete the listed remote files")
    train.set_defaults(handler=_train)

    sft = sub.add_parser("sft", help="IVR-R1 cold start: fine-tune the Solver adapter on "
                         "ivr.sft_data into a new run's checkpoint 0 (then train --resume)")
    _config_args(sft)
    sft.add_argument("--run-dir", help="the new run's directory (default: storage.run_dir)")
    sft.add_argument("--data", help="the traces Parquet (sets ivr.sft_data; pass the same to "
                     "train)")
    sft.set_defaults(handler=_sft)

    check = sub.add_parser("config", help="validate and print the resolved config")
    _config_args(check)
    check.set_defaults(handler=_config)

    rescore = sub.add_parser("rescore", help="recompute rewards of a run under another config")
    rescore.add_argument("run")
    rescore.add_argument("--config", action="append", default=[],
                         help="YAML overlays applied on top of the run's own config")
    rescore.add_argument("--set", dest="overrides", action="append", default=[])
    rescore.add_argument("--out", required=True, help="directory of the new rewards set")
    rescore.set_defaults(handler=_rescore)

    traces = sub.add_parser("traces", help="show questions, rollouts, steps and rewards")
    traces.add_argument("run")
    traces.add_argument("--iteration", type=int)
    traces.add_argument("--image")
    traces.add_argument("--limit", type=int, help="at most this many questions")
    traces.add_argument("--width", type=int, help="wrap width (default: the terminal's)")
    traces.add_argument("--agreement", action="store_true",
                        help="end with the answer agreement of the first vs the last iterations")
    traces.set_defaults(handler=_traces)

    report = sub.add_parser("report", help="plots of the paper's diagnostics and an HTML page")
    report.add_argument("run")
    report.add_argument("--out", help="default: RUN/report")
    report.add_argument("--iteration", type=int, help="iteration of Fig. 7 (default: latest)")
    report.add_argument("--image-index", type=int, help="question of Fig. 7 (default: largest group)")
    report.set_defaults(handler=_report)

    compact = sub.add_parser("compact", help="merge completed iterations' table files into "
                             "chunk files (fast whole-run queries; readers see the same rows)")
    compact.add_argument("run")
    compact.add_argument("--every", type=_positive_int, metavar="N",
                         help="iterations per chunk (default: the run's storage.compact_every)")
    compact.set_defaults(handler=_compact)

    migrate = sub.add_parser("migrate", help="upgrade a run written by an older version in "
                             "place (train --resume does it too)")
    migrate.add_argument("run")
    migrate.set_defaults(handler=_migrate)

    repair = sub.add_parser("repair", help="find a run's damaged files (truncated, corrupt, "
                            "missing), move them aside with what must be redone after them, so "
                            "that train --resume redoes it")
    repair.add_argument("run")
    repair.add_argument("--dry-run", action="store_true",
                        help="list the damage and what would be moved; move nothing")
    repair.set_defaults(handler=_repair)

    export = sub.add_parser("export", help="merge the Solver adapter into a full checkpoint")
    export.add_argument("run")
    export.add_argument("--iteration", default="latest", help="an iteration or 'latest'")
    export.add_argument("--out", required=True)
    export.set_defaults(handler=_export)

    evaluate = sub.add_parser("evaluate", help="lmms-eval on a run's checkpoint or the base")
    evaluate.add_argument("run")
    evaluate.add_argument("--checkpoint", default="latest",
                          help="an iteration, 'latest' or 'base'")
    evaluate.add_argument("--tasks", help="comma-separated lmms-eval tasks (default: config)")
    evaluate.add_argument("--limit", type=int)
    evaluate.set_defaults(handler=_evaluate)

    sweep = sub.add_parser("sweep", help="one run per overlay through the train deployment "
                           "(needs a Prefect server and a worker), then the ablation table")
    sweep.add_argument("--config", action="append", default=[], required=True,
                       help="the base config; repeat to compose")
    sweep.add_argument("--overlays", nargs="+", required=True, metavar="YAML",
                       help="one run per overlay, e.g. configs/ablations/*.yaml")
    sweep.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE", help="applied to every run")
    sweep.add_argument("--runs-root", default="runs/sweep",
                       help="each run in <runs-root>/<overlay name>")
    sweep.add_argument("--out", help="where ablation.parquet/.md go (default: --runs-root)")
    sweep.add_argument("--no-wait", action="store_true",
                       help="submit and return; run again later to collect the table")
    sweep.set_defaults(handler=_sweep)

    serve = sub.add_parser("serve", help="serve the Prefect deployments (needs a server)")
    serve.add_argument("--eval-cron", default="0 * * * *",
                       help="schedule of ireasoner-evaluate/scheduled")
    serve.add_argument("--eval-run-dir", default="runs/smoke",
                       help="the run ireasoner-evaluate/scheduled evaluates")
    serve.set_defaults(handler=_serve)

    data = sub.add_parser("data", help="image data tools")
    data_sub = data.add_subparsers(required=True, metavar="ACTION")
    synth = data_sub.add_parser("synth", help="draw labelled synthetic charts and figures")
    synth.add_argument("--n", type=int, default=200)
    synth.add_argument("--out", default="data/synthetic")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    synth.set_defaults(handler=_synth)

    vllm_serve = sub.add_parser("vllm-serve", help="start a vLLM server for a config's model "
                                "(set rollout.server.url to the URL it prints); Ctrl-C stops it")
    _config_args(vllm_serve)
    vllm_serve.add_argument("--log-dir", default=".", help="where vllm_server.log goes")
    vllm_serve.set_defaults(handler=_vllm_serve)

    tiny = sub.add_parser("tiny-model", help="build (or find) the cached tiny Qwen2.5-VL")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(handler=_tiny)
    world = sub.add_parser("world-model", help="build (or find) the cached world model and print "
                           "its recorded held-out pass@1 / maj@5")
    world.add_argument("--seed", type=int, default=0)
    world.set_defaults(handler=_world)
    _console_args(parser, sub)
    return parser


def _console_args(parser: argparse.ArgumentParser, sub) -> None:
    """--version, and -v/-q before or after the command (`ireasoner -q train`, `train -q`)."""
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the version (and the code's git revision) and exit")
    for target, default in [(parser, 0)] + [(p, argparse.SUPPRESS) for p in sub.choices.values()]:
        target.add_argument("-v", "--verbose", action="count", default=default,
                            help="more output: DEBUG messages and Prefect's task-run lines")
        target.add_argument("-q", "--quiet", action="count", default=default,
                            help="less output: warnings and errors only, no progress")


class _Version(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from ireasoner.pipeline.run import code_version

        print(f"ireasoner {code_version()}")
        parser.exit()


def _sweep(args: argparse.Namespace) -> int:
    from flows.limits import server_configured
    from flows.sweep import plan, sweep

    plan(args.config, args.overlays, args.runs_root, args.overrides)  # every config, first
    if not server_configured():
        raise ConfigError("sweep submits flow runs to the ireasoner/train deployment: set "
                          "PREFECT_API_URL to a Prefect server where it is deployed (README)")
    table = sweep(args.config, args.overlays, args.runs_root, args.overrides, out=args.out,
                  wait=not args.no_wait)
    if table is not None:
        print(table.read_text(encoding="utf-8"))
        print(f"table: {table} (and ablation.parquet beside it)")
    return 0


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", default=[],
                        help="YAML file; repeat to compose (later files win)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override one key, e.g. rewards.gamma=0.5")


def _train(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.run_dir:
        overrides.append(f"storage.run_dir={args.run_dir}")
    cfg = load_config(args.config, overrides)  # validated before anything heavy
    from flows.train import train
    from ireasoner.inspect.tracking import check_trackers
    from ireasoner.trainers.registry import trainer_spec
    from storage import RunStore

    trainer_spec(cfg.trainer.kind)
    check_trackers(cfg.logging)
    if args.overwrite:
        _replace_run(RunStore(cfg.storage.run_dir), cfg.storage.lease_seconds, args)

    result = train(config=[str(p) for p in args.config], overrides=overrides,
                   resume=args.resume)
    print(f"trained {result['iterations']} iterations; artifacts in {result['run_dir']}")
    return 0


def _replace_run(store, lease_seconds: float, args: argparse.Namespace) -> None:
    """--overwrite: never delete what could be kept, nor what another process trains."""
    if store.remote is None:
        aside = store.move_aside(force=args.force)
        if aside is not None:
            print(f"moved the old run aside to {aside} (delete it when you no longer need it)")
        return
    files = store.list_remote()
    if not files:
        return
    shown = "\n".join(f"  {rel} ({size} bytes)" for rel, size in sorted(files.items())[:20])
    more = f"\n  ... and {len(files) - 20} more" if len(files) > 20 else ""
    print(f"--overwrite would delete {len(files)} files ({sum(files.values())} bytes) at "
          f"{store.location}:\n{shown}{more}")
    if not args.yes and not (sys.stdin.isatty() and input("delete them? [y/N] ") in ("y", "yes")):
        raise OverwriteNotConfirmed(f"nothing deleted at {store.location}: pass --yes to delete "
                                    "the files listed above")
    deleted = store.remove_remote(force=args.force, lease_seconds=lease_seconds)
    print(f"deleted {deleted} files at {store.location}")


def _sft(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"ivr.sft_data={args.data}")
    load_config(args.config, overrides)  # validated before anything heavy
    from flows.sft import sft

    result = sft(config=[str(p) for p in args.config], overrides=overrides, run_dir=args.run_dir)
    print(f"fine-tuned the solver adapter on {result['examples']} traces in {result['steps']} "
          f"steps; checkpoint 0 of {result['run_dir']}")
    return 0


def _config(args: argparse.Namespace) -> int:
    import yaml

    from ireasoner.trainers.registry import trainer_spec

    cfg = load_config(args.config, args.overrides)
    trainer_spec(cfg.trainer.kind)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    print(f"# fingerprint {cfg.fingerprint()}")
    for line in training_summary(cfg):
        print(f"# {line}")
    return 0


def _rescore(args: argparse.Namespace) -> int:
    from ireasoner.commands.rescore import rescore_run

    print(rescore_run(args.run, args.config, args.overrides, args.out))
    return 0


def _traces(args: argparse.Namespace) -> int:
    from ireasoner.inspect.traces import format_traces
    from storage import RunStore

    width = args.width or shutil.get_terminal_size((100, 20)).columns
    store = RunStore(args.run).pull(checkpoints=False)
    print(format_traces(store, iteration=args.iteration, image_id=args.image,
                        limit=args.limit, width=width))
    if args.agreement:
        from ireasoner.inspect.traces import agreement_line

        print(agreement_line(store))
    return 0


def _report(args: argparse.Namespace) -> int:
    from ireasoner.inspect.report import write_report
    from storage import RunStore

    store = RunStore(args.run).pull(checkpoints=False)
    out = Path(args.out) if args.out else store.root / "report"
    page = write_report(store, out, iteration=args.iteration,
                        image_index=args.image_index)
    print(f"report written to {page}")
    return 0


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _compact(args: argparse.Namespace) -> int:
    from ireasoner.inspect.queries import require_run
    from ireasoner.pipeline.run import run_config
    from storage import RunStore, compact_run

    store = RunStore(args.run).pull(checkpoints=False)
    require_run(store)
    every = args.every or run_config(store).storage.compact_every
    if not every:
        raise ConfigError(f"{store.location} has storage.compact_every = 0 (never); pass --every N")
    with store.lock():  # not while a training writes to it
        store.pull(checkpoints=False)
        chunks = compact_run(store, every)
        store.push()
    print(f"{store.location}: {len(chunks)} chunk files written (blocks of {every} completed "
          f"iterations; {store.completed_iterations()} completed)")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from ireasoner.commands.migrate import migrate_command

    print(migrate_command(args.run))
    return 0


def _repair(args: argparse.Namespace) -> int:
    from ireasoner.commands.repair import repair_command

    print(repair_command(args.run, dry_run=args.dry_run))
    return 0


def _export(args: argparse.Namespace) -> int:
    from ireasoner.commands.export import export_checkpoint
    from storage import RunStore

    path = export_checkpoint(RunStore(args.run).pull(), args.iteration, Path(args.out))
    print(f"merged Solver checkpoint written to {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ireasoner.commands.evaluate import evaluate_run_checkpoint
    from storage import RunStore

    tasks = args.tasks.split(",") if args.tasks else None
    store = RunStore(args.run).pull()
    print(evaluate_run_checkpoint(store, args.checkpoint, tasks, args.limit))
    store.push()  # the results, at a URL
    return 0


def _serve(args: argparse.Namespace) -> int:
    from flows.serve import serve_deployments

    serve_deployments(eval_cron=args.eval_cron, eval_run_dir=args.eval_run_dir)
    return 0


def _synth(args: argparse.Namespace) -> int:
    from ireasoner.data.synthetic import synth_command

    width, _, height = args.size.partition("x")
    synth_command(args.n, args.out, args.seed, (int(width), int(height)))
    return 0


def _vllm_serve(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    from ireasoner.commands.vllm_serve import serve_config

    server = serve_config(cfg, Path(args.log_dir))
    print(server.url, flush=True)
    try:
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def _tiny(args: argparse.Namespace) -> int:
    from ireasoner.model.tiny import ensure_tiny_model

    print(ensure_tiny_model(args.seed))
    return 0


def _world(args: argparse.Namespace) -> int:
    from ireasoner.model.world import ensure_world_model, read_report

    path = ensure_world_model(args.seed)
    report = read_report(path)
    kept = (f"step {report.steps}" if report.blend == 1.0 else
            f"{1 - report.blend:g} x step {report.blended_from} + {report.blend:g} x step {report.steps}")
    print(f"{path}\nwarm-up: kept {kept} of {report.trained_steps} "
          f"({report.stopped}); held-out ({report.held_out_images} images x 5 samples): "
          f"pass@1 {report.held_out_pass_at_1:.3f}, maj@5 {report.held_out_maj_at_5:.3f}, agreement {report.held_out_agreement:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
