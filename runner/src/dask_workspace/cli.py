"""``python -m dask_workspace``: the ``run``, ``check``, ``bundle``, ``retire``, ``deletion-cost``
commands.

Bad input (study file, flags, settings, results URI) exits 2 with one line per problem and no
traceback. See ``dask_workspace.errors`` for every exit code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from dask_workspace.errors import EXIT_BAD_INPUT, EXIT_SIGINT, Problem, UsageError
from dask_workspace.tls import config_tls_problem

logger = logging.getLogger("dask_workspace")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # distributed logs every worker join/leave at INFO through its own handlers; keep ours clean.
    logging.getLogger("distributed").setLevel(logging.WARNING)


def _fail(err: UsageError) -> None:
    for line in err.format().splitlines():
        click.echo(f"error: {line}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _interrupt_exits_130(command: Callable[..., None]) -> Callable[..., None]:
    """Ctrl-C before the runner's own handler is in place (loading the study, connecting,
    shipping the bundle) or a second Ctrl-C after it: click would print "Aborted!" and exit 1,
    which reads as a crash. Exit 130 with what was kept instead (persisted groups stay)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo(
                "interrupted (SIGINT): groups persisted so far are kept; run the same command "
                "again to resume",
                err=True,
            )
            sys.exit(EXIT_SIGINT)

    return wrapper


def _check_scheduler(address: str) -> None:
    from distributed.comm import parse_address
    from distributed.comm.registry import backends

    try:
        scheme, loc = parse_address(address)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            [Problem("--scheduler", f"{address!r} is not an address: {exc}")]
        ) from None
    if scheme not in backends or not loc or " " in address:
        raise UsageError(
            [
                Problem(
                    "--scheduler",
                    f"{address!r} is not a Dask scheduler address; use tcp://HOST:8786",
                )
            ]
        )
    tls = config_tls_problem(address)
    if tls is not None:
        raise UsageError([Problem("--scheduler", tls)])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Run simulation studies on a Dask cluster with bounded memory."""


@main.command()
@click.argument("study", metavar="STUDY")
@click.option(
    "--scheduler",
    required=True,
    envvar="DASK_SCHEDULER_ADDRESS",
    help="Dask scheduler address, e.g. tcp://dask-scheduler:8786 (env DASK_SCHEDULER_ADDRESS).",
)
@click.option(
    "--results",
    required=True,
    help="Where results go: a directory, or az://container/prefix for Azure Blob Storage. "
    "Rerunning with the same location resumes.",
)
@click.option(
    "--mode",
    default=None,
    help="window (bounded sliding window, default) or batch (barrier batches). "
    "Dask config: workspace.runner.mode.",
)
@click.option(
    "--window",
    default=None,
    help="Groups allowed in flight: auto (from the cluster's threads and memory) or N. "
    "Dask config: workspace.runner.window.",
)
@click.option(
    "--batch-size",
    default=None,
    help="Groups per barrier batch in batch mode. Dask config: workspace.runner.batch-size.",
)
@click.option(
    "--summary",
    "summary_path",
    default=None,
    help="Write the run summary JSON to this file.",
)
@click.option(
    "--flush-groups",
    default=None,
    help="Write a part file after this many finished groups (workspace.runner.flush-groups).",
)
@click.option(
    "--flush-seconds",
    default=None,
    help="... or this long after the oldest unwritten group (workspace.runner.flush-seconds).",
)
@click.option(
    "--progress-interval",
    default=None,
    help="Seconds between progress lines (workspace.runner.progress-interval).",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    default=False,
    help="Run the groups this results location recorded as failed again, with today's code.",
)
@click.option(
    "--fail-fast",
    default=None,
    help="Stop (exit 3) when the first N groups of the run all fail with the same error; "
    "0: never. Dask config: workspace.runner.fail-fast (default 5).",
)
@click.option(
    "--allow-code-change",
    is_flag=True,
    default=None,
    help="Resume a location whose results were made with other code (another bundle hash): "
    "the results already there stay valid. Dask config: workspace.runner.allow-code-change.",
)
@click.option(
    "--chunking",
    default=None,
    help="auto (pack short replicates into tasks of about --chunk-seconds, default) or off "
    "(one task per replicate). Dask config: workspace.runner.chunking.",
)
@click.option(
    "--chunk-seconds",
    default=None,
    help="Duration a packed task aims at, e.g. 0.2 or 500ms (workspace.runner.chunk-seconds).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level of the runner's messages (stderr).",
)
@_interrupt_exits_130
def run(
    study: str,
    scheduler: str,
    results: str,
    mode: str | None,
    window: str | None,
    batch_size: str | None,
    summary_path: str | None,
    flush_groups: str | None,
    flush_seconds: str | None,
    progress_interval: str | None,
    retry_failed: bool,
    fail_fast: str | None,
    allow_code_change: bool | None,
    chunking: str | None,
    chunk_seconds: str | None,
    log_level: str,
) -> None:
    """Run (or resume) the study in file STUDY on the cluster at --scheduler.

    Exit codes: 0 all groups persisted, 2 bad input, 3 some groups failed (see the failures
    table), 4 the cluster cannot run the study, 5 writing results failed, 130/143 interrupted.
    """
    _setup_logging(log_level)
    if summary_path:
        # The summary file describes this run or does not exist: a stale one from an earlier
        # run must not be read as the result of a run that stopped on bad input.
        with contextlib.suppress(OSError):
            os.unlink(summary_path)
    from dask_workspace.config import load_settings
    from dask_workspace.runner import run_study
    from dask_workspace.study import load_study

    overrides: dict[str, tuple[str, Any]] = {
        "mode": ("--mode", mode),
        "window": ("--window", window),
        "batch_size": ("--batch-size", batch_size),
        "flush_groups": ("--flush-groups", flush_groups),
        "flush_seconds": ("--flush-seconds", flush_seconds),
        "progress_interval": ("--progress-interval", progress_interval),
        "fail_fast": ("--fail-fast", fail_fast),
        "allow_code_change": ("--allow-code-change", True if allow_code_change else None),
        "chunking": ("--chunking", chunking),
        "chunk_seconds": ("--chunk-seconds", chunk_seconds),
    }
    problems: list[Problem] = []
    loaded = None
    try:
        loaded = load_study(study)
    except UsageError as err:
        problems.extend(
            Problem(f"{err.source}: {p.path}" if err.source else p.path, p.message)
            for p in err.problems
        )
    try:
        settings = load_settings(overrides=overrides)
    except UsageError as err:
        problems.extend(err.problems)
    try:
        _check_scheduler(scheduler)
    except UsageError as err:
        problems.extend(err.problems)
    bundle = None
    if loaded is not None:
        from dask_workspace.bundle import build_bundle

        try:
            bundle = build_bundle(study_file=study)
        except UsageError as err:
            problems.extend(err.problems)
    if bundle is not None and summary_path:
        from dask_workspace.bundle import written_inside

        if written_inside(bundle, summary_path):
            logger.warning(
                "--summary %s is inside the study folder: it becomes part of the study bundle "
                "and changes its code hash on every run (a resume would be refused). Write it "
                "elsewhere, or add its name to %s/.studyignore",
                summary_path,
                bundle.study_dir,
            )
    if problems or loaded is None:
        _fail(UsageError(problems))
        return
    try:
        summary = run_study(
            study=loaded,
            scheduler=scheduler,
            results=results,
            settings=settings,
            summary_path=summary_path,
            bundle=bundle,
            retry_failed=retry_failed,
            argv=sys.argv[1:],
        )
    except UsageError as err:
        _fail(err)
        return
    if summary.message and summary.exit_code != 0:
        click.echo(summary.message, err=True)
    sys.exit(summary.exit_code)


@main.command()
@click.argument("study", metavar="STUDY")
@click.option("--results", default=None, help="Also report what this results location holds.")
@click.option(
    "--no-run",
    is_flag=True,
    default=False,
    help="Do not run the first group's replicate and targets (only validate and import).",
)
@click.option(
    "--allow-code-change",
    is_flag=True,
    default=None,
    help="Do not count a results location made with other code as a problem.",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    default=False,
    help="The run will retry failed groups with today's code: other code is not a problem.",
)
@click.option("--json", "as_json", is_flag=True, default=False, help="Print one JSON object.")
def check(
    study: str,
    results: str | None,
    no_run: bool,
    allow_code_change: bool | None,
    retry_failed: bool,
    as_json: bool,
) -> None:
    """Check study file STUDY before running it: schema, bundle, imports, one replicate.

    Exit 0 when the study can run, 2 on any problem (the messages `run` would give).
    """
    import json

    import dask.config

    import dask_workspace.config  # noqa: F401 -- registers the workspace.runner defaults
    from dask_workspace.check import check_study, format_report

    given = True if allow_code_change else None
    allow = retry_failed or bool(
        dask.config.get("workspace.runner.allow-code-change", override_with=given)
    )
    report = check_study(
        study_file=study, results=results, run_first_group=not no_run, allow_code_change=allow
    )
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        click.echo(format_report(report), err=not report.ok)
    sys.exit(0 if report.ok else EXIT_BAD_INPUT)


@main.command()
@click.argument("study", metavar="STUDY")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print one JSON object.")
def bundle(study: str, as_json: bool) -> None:
    """List the files of STUDY's bundle (its folder, minus what is skipped) and their hash."""
    import json

    from dask_workspace.bundle import build_bundle, format_listing

    try:
        built = build_bundle(study_file=study)
    except UsageError as err:
        _fail(err)
        return
    click.echo(json.dumps(built.describe()) if as_json else format_listing(built))


@main.command()
@click.option("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786.")
@click.option(
    "--name-prefix",
    default=None,
    help="The pod's name: retires workers named exactly this or this-N (N = process index).",
)
@click.option(
    "--timeout",
    default="60",
    show_default=True,
    help="Give up after this many seconds (the command still exits 0).",
)
def retire(scheduler: str | None, name_prefix: str | None, timeout: str) -> None:
    """Retire one pod's workers: move their results to other workers, then close them.

    Used by the worker pods' preStop hook. Always exits 0 -- even on bad flags -- so the pod's
    shutdown is never blocked; problems are logged.
    """
    _setup_logging("INFO")
    try:
        from dask_workspace.retire import retire_pod_workers

        try:
            seconds = max(float(timeout), 1.0)
        except ValueError:
            logger.warning("retire: --timeout %r is not a number of seconds; using 60", timeout)
            seconds = 60.0
        if not scheduler or not name_prefix:
            logger.warning("retire: needs --scheduler and --name-prefix; nothing retired")
        else:
            retire_pod_workers(scheduler=scheduler, name_prefix=name_prefix, timeout=seconds)
    except BaseException as exc:  # whatever happens, the pod must shut down
        logger.warning("retire failed: %s", exc)
    logging.shutdown()
    # A client thread stuck on an unreachable scheduler must not hold the process open.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@main.command(name="deletion-cost")
@click.option(
    "--pods-url",
    required=True,
    help="The scheduler's /workspace/pods.json, e.g. http://dask-scheduler.ns.svc:8787/workspace/pods.json.",
)
@click.option("--namespace", required=True, help="Namespace of the worker pods to annotate.")
@click.option("--interval", default=None, help="Seconds between looks (default 15s).")
@click.option(
    "--min-update-seconds",
    default=None,
    help="Patch one pod at most this often (default 60s).",
)
def deletion_cost_command(
    pods_url: str, namespace: str, interval: str | None, min_update_seconds: str | None
) -> None:
    """Keep controller.kubernetes.io/pod-deletion-cost on worker pods up to date (runs forever)."""
    import threading

    from dask_workspace.deletion_cost import DeletionCostLoop, kubernetes_patcher, settings

    _setup_logging("INFO")
    iv, mu, mp = settings(
        interval=interval, min_update_seconds=min_update_seconds, max_patches=None
    )
    loop = DeletionCostLoop(
        pods_url=pods_url,
        patch=kubernetes_patcher(namespace),
        interval=iv,
        min_update_seconds=mu,
        max_patches=mp,
    )
    logger.info("deletion cost: watching %s every %gs", pods_url, iv)
    loop.run(threading.Event())
