"""The ``mlpipe`` commands on versions and experiments (``register``, ``promote``, ``rollback``,
``compare``, ``fetch``, ``gc``, ``fsck``, ``retrain``, ``sweep``): each reads its parsed arguments, calls the
registry and prints the outcome; :func:`add` declares their options. The libraries load on first use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlpipe.cli.options import repo_command


def register(args: argparse.Namespace) -> None:
    from mlpipe.registry import repository
    from mlpipe.registry import tags as registry

    project = repository.project(args.repo, args.pipeline)
    tag = registry.register(project, args.ref, version=args.version, bump=args.bump)
    print(f"mlpipe: registered {tag} (push it: git push origin {tag} && dvc push)", file=sys.stderr)


def promote(args: argparse.Namespace) -> None:
    _move_stage(args, "promote")


def rollback(args: argparse.Namespace) -> None:
    _move_stage(args, "rollback")


def _move_stage(args: argparse.Namespace, how: str) -> None:
    """Promote or roll back ``args.stage``; print where it points and the stage tag to push."""
    from mlpipe.registry import repository
    from mlpipe.registry import tags as registry

    project = repository.project(args.repo, args.pipeline)
    if how == "promote":
        live = Path(args.live) if args.live else None
        version = registry.promote(project, args.version, args.stage, live=live)
        done = f"{project.artifact} {version} is now in {args.stage}"
    else:
        version = registry.rollback(project, args.stage, args.to)
        done = f"{args.stage} rolled back to {project.artifact} {version}"
    print(
        f"mlpipe: {done} (push it: git push origin {registry.stage_tag(project, args.stage)})",
        file=sys.stderr,
    )


def compare(args: argparse.Namespace) -> None:
    from mlpipe.registry import comparison, repository
    from mlpipe.registry import tags as registry

    project = repository.project(args.repo, args.pipeline)
    old, new = (registry.version_tag(project, v) for v in (args.old, args.new))
    rows = comparison.diff_table(project, old, new)
    width = max([len(f"{p}  {k}") for p, k, *_ in rows] + [10])
    print(f"{'metric':<{width}}  {old:>22}  {new:>22}  {'change':>12}")
    for path, key, a, b, change in rows:
        shown = [f"{v:.6g}" if isinstance(v, float) else str(v) for v in (a, b)]
        delta = f"{change:+.6g}" if change is not None else "-"
        print(f"{path + '  ' + key:<{width}}  {shown[0]:>22}  {shown[1]:>22}  {delta:>12}")
    result = comparison.compare_revisions(project, old, new)
    print(result.describe())
    if result.worse:
        tolerance = project.params.registry.tolerance
        raise repository.RegistryError(f"{new} is worse than {old} beyond the tolerance {tolerance:g}")


def fetch(args: argparse.Namespace) -> None:
    from mlpipe.registry import repository, storage
    from mlpipe.registry import tags as registry

    project = repository.project(args.repo, args.pipeline)
    version = registry.resolve(project, args.version, args.stage)
    out = storage.fetch(project, version, Path(args.output))
    print(f"mlpipe: {project.artifact} {version} verified in {out}", file=sys.stderr)


def gc(args: argparse.Namespace) -> None:
    from mlpipe.registry import storage

    storage.gc(Path(args.repo).resolve(), [a for a in args.dvc_args if a != "--"], remote=args.remote)


def fsck(args: argparse.Namespace) -> None:
    from mlpipe.registry import fsck as checker
    from mlpipe.registry import repository

    report = checker.scan(args.repo, args.all_tags)
    for damage in report.damage:
        print(f"mlpipe: fsck: {damage.line()}", file=sys.stderr)
    if report.damage and args.repair:
        print(f"mlpipe: fsck: repairing {len(report.damage)} problems from the remote", file=sys.stderr)
        report = checker.repair(args.repo, report, args.all_tags)
        for damage in report.damage:
            print(f"mlpipe: fsck: still: {damage.line()}", file=sys.stderr)
    print(
        f"mlpipe: fsck: {report.objects} cache objects and {report.files} workspace files hashed,"
        f" {len(report.damage)} problems",
        file=sys.stderr,
    )
    if report.damage:
        hint = "" if args.repair else " (mlpipe fsck --repair fetches them again)"
        raise repository.RegistryError(f"{len(report.damage)} damaged or missing objects{hint}")


def retrain(args: argparse.Namespace) -> None:
    from mlpipe.monitoring import retrain
    from mlpipe.registry import repository
    from mlpipe.registry import tags as registry

    project = repository.project(args.repo, args.pipeline)
    if project.params.retrain is None:
        raise repository.RegistryError(f"{project.pipeline or '.'}/params.yaml has no retrain section")
    decision = retrain.decide(
        retrain.new_rows(project),
        project.params.retrain.min_new_rows,
        retrain.monitoring_verdict(project.root / project.pipeline / args.monitor),
    )
    if not decision.retrain or args.dry_run:
        print(
            f"mlpipe: {'would retrain' if decision.retrain else 'no retraining'}: {decision.reason}",
            file=sys.stderr,
        )
        return
    print(f"mlpipe: retraining {project.artifact}: {decision.reason}", file=sys.stderr)
    tag = retrain.retrain(project, decision)
    stage = project.params.retrain.stage
    print(
        f"mlpipe: registered {tag} in {stage} (push it: git push origin {tag}"
        f" {registry.stage_tag(project, stage)} && dvc push)",
        file=sys.stderr,
    )


def sweep(args: argparse.Namespace) -> None:
    from mlpipe.registry import repository, sweep

    project = repository.project(args.repo, args.pipeline)
    commands = sweep.queue(project.root, args.file, pipeline=project.pipeline, dry_run=args.dry_run)
    for command in commands:
        print(" ".join(command[2:]))
    done = "checked (dry run)" if args.dry_run else "queued; run them with `dvc queue start -j 2`"
    print(f"mlpipe: {len(commands)} experiments {done}", file=sys.stderr)


def add(commands: Any) -> None:
    """The commands on model versions and experiments, in the repository."""
    register_command = repo_command(
        commands, "register", help="register a new model version (refused if the gate failed)"
    )
    register_command.add_argument(
        "--ref", default="HEAD", help="the commit to register (default: %(default)s)"
    )
    register_command.add_argument("--version", help="the version, e.g. v1.0.0 (default: bump the latest)")
    register_command.add_argument(
        "--bump", choices=["major", "minor", "patch"], default="minor", help="without --version"
    )
    register_command.set_defaults(run=register)

    promote_command = repo_command(
        commands, "promote", help="assign a stage to a version (refused if it regresses)"
    )
    promote_command.add_argument("version", help="e.g. v2.0.0 or study-time@v2.0.0")
    promote_command.add_argument("--stage", default="prod", help="default: %(default)s")
    promote_command.add_argument(
        "--live",
        metavar="MONITOR_JSON",
        help="let live outcomes decide: this mlpipe monitor result (metrics/monitor.json) must say promote",
    )
    promote_command.set_defaults(run=promote)

    rollback_command = repo_command(
        commands, "rollback", help="re-point a stage to the version it held before"
    )
    rollback_command.add_argument("--stage", default="prod", help="default: %(default)s")
    rollback_command.add_argument("--to", help="a specific earlier version")
    rollback_command.set_defaults(run=rollback)

    compare_command = repo_command(
        commands, "compare", help="every metric of two versions; exit 1 if the second regressed"
    )
    compare_command.add_argument("old", help="version or git ref, e.g. v1.0.0")
    compare_command.add_argument("new", help="version or git ref, e.g. v2.0.0 or HEAD")
    compare_command.set_defaults(run=compare)

    fetch_command = repo_command(
        commands, "fetch", help="download a version's bundle into a folder (HEAD does not move)"
    )
    fetch_command.add_argument("version", nargs="?", help="e.g. v1.0.0 (or give --stage)")
    fetch_command.add_argument("--stage", help="the version this stage holds now, e.g. prod")
    fetch_command.add_argument("-o", "--output", required=True, help="folder to create")
    fetch_command.set_defaults(run=fetch)

    add_upkeep(commands)


def add_upkeep(commands: Any) -> None:
    """The commands that keep the repository: gc, fsck, retrain, sweep."""
    gc_command = repo_command(
        commands,
        "gc",
        help="run `dvc gc`, refused while a registered version's data is not on the remote",
        pipeline=False,
    )
    gc_command.add_argument("--remote", help="DVC remote to check (default: the default remote)")
    gc_command.add_argument("dvc_args", nargs=argparse.REMAINDER, help="arguments for dvc gc, after --")
    gc_command.set_defaults(run=gc)

    fsck_command = repo_command(
        commands,
        "fsck",
        help="re-hash every DVC cache object the locks name; exit 1 naming each bad or missing one",
        pipeline=False,
    )
    fsck_command.add_argument("--all-tags", action="store_true", help="also every registered version's locks")
    fsck_command.add_argument(
        "--repair",
        action="store_true",
        help="move bad objects aside, dvc fetch them again, restore spoilt workspace copies",
    )
    fsck_command.set_defaults(run=fsck)

    retrain_command = repo_command(
        commands, "retrain", help="retrain on new data or after an alert; register the result as challenger"
    )
    retrain_command.add_argument(
        "--monitor",
        default="metrics/monitor.json",
        help="mlpipe monitor's metrics, in the pipeline folder: an alert retrains (default: %(default)s)",
    )
    retrain_command.add_argument(
        "--dry-run", action="store_true", help="say whether it would retrain, do nothing"
    )
    retrain_command.set_defaults(run=retrain)

    sweep_command = repo_command(
        commands, "sweep", help="queue a grid of experiments, every key checked first"
    )
    sweep_command.add_argument("file", help="sweep file with a grid, e.g. sweeps/seed-grid.yaml")
    sweep_command.add_argument("--dry-run", action="store_true", help="check and print, queue nothing")
    sweep_command.set_defaults(run=sweep)
