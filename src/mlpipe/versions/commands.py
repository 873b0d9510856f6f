"""The ``mlpipe`` commands on versions and experiments (``register``, ``promote``, ``rollback``,
``compare``, ``fetch``, ``gc``, ``fsck``, ``retrain``, ``sweep``): each reads its parsed arguments, calls the
registry and prints the outcome; :mod:`mlpipe.cli` declares their options. The libraries load on first use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(args: argparse.Namespace) -> None:
    from mlpipe.versions import registry, repository

    project = repository.project(args.repo, args.pipeline)
    tag = registry.register(project, args.ref, version=args.version, bump=args.bump)
    print(f"mlpipe: registered {tag} (push it: git push origin {tag} && dvc push)", file=sys.stderr)


def promote(args: argparse.Namespace) -> None:
    _move_stage(args, "promote")


def rollback(args: argparse.Namespace) -> None:
    _move_stage(args, "rollback")


def _move_stage(args: argparse.Namespace, how: str) -> None:
    """Promote or roll back ``args.stage``; print where it points and the stage tag to push."""
    from mlpipe.versions import registry, repository

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
    from mlpipe.versions import comparison, registry, repository

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
    from mlpipe.versions import registry, repository

    project = repository.project(args.repo, args.pipeline)
    version = registry.resolve(project, args.version, args.stage)
    out = registry.fetch(project, version, Path(args.output))
    print(f"mlpipe: {project.artifact} {version} verified in {out}", file=sys.stderr)


def gc(args: argparse.Namespace) -> None:
    from mlpipe.versions import registry

    registry.gc(Path(args.repo).resolve(), [a for a in args.dvc_args if a != "--"], remote=args.remote)


def fsck(args: argparse.Namespace) -> None:
    from mlpipe.versions import fsck as checker
    from mlpipe.versions import repository

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
    from mlpipe.versions import registry, repository

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
    from mlpipe.versions import repository, sweep

    project = repository.project(args.repo, args.pipeline)
    commands = sweep.queue(project.root, args.file, pipeline=project.pipeline, dry_run=args.dry_run)
    for command in commands:
        print(" ".join(command[2:]))
    done = "checked (dry run)" if args.dry_run else "queued; run them with `dvc queue start -j 2`"
    print(f"mlpipe: {len(commands)} experiments {done}", file=sys.stderr)
