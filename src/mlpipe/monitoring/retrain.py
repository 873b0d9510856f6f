"""``mlpipe retrain``: retrain on new data when enough has arrived or monitoring alerted, and let
the result compete.

The decision: the rows the source holds now (``ingest.url`` / ``ingest.query``, counted in the
database) beyond the snapshot's extent that ``ingest`` recorded in its metrics: with
``ingest.key``, the rows whose key is newer than the snapshot's newest; without, the rows over the
snapshot's row count. At least ``retrain.min_new_rows`` new rows, or the verdict ``alert`` in the
monitoring metrics, retrains. Then, in a committed tree: ``dvc repro --force`` of the ingest
stage (a new snapshot), ``dvc repro`` of the pipeline (the gate in the package stage decides), a
commit of what the run changed, the new version registered (GTO, minor bump) and assigned
``retrain.stage`` (``challenger``). A model that fails the gate is not registered: the reason is
printed and kept in the package stage's metrics, and nothing is committed (``git checkout -- . &&
dvc checkout`` goes back to the committed version).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy

from mlpipe.core.errors import PipelineError
from mlpipe.core.params import IngestParams
from mlpipe.registry.repository import Project, RegistryError, git


@dataclass(frozen=True)
class Decision:
    retrain: bool
    reason: str
    new_rows: int


def source_rows(settings: IngestParams, folder: Path, newer_than: Any = None) -> int:
    """How many rows the ingest source holds now, or with ``newer_than`` how many have an
    ``ingest.key`` above it (paths and SQLite URLs relative to ``folder``).

    Raises:
        PipelineError: if the source cannot be read.
    """
    from mlpipe.sources import reading as sources

    key = settings.key if newer_than is not None else None
    with contextlib.chdir(folder):
        if sources.is_file_source(settings.url):
            chunks = sources.read_file_chunks(Path(settings.url))
            return sum(int((chunk[key] > newer_than).sum()) if key else len(chunk) for chunk in chunks)
        url = sources.database_url(settings.url)
        where = f" WHERE snapshot.{key} > :newest" if key else ""
        query = sqlalchemy.text(f"SELECT COUNT(*) FROM ({settings.query}) AS snapshot{where}")
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as con:
                return int(con.execute(query, {"newest": newer_than} if key else {}).scalar_one())
        except sqlalchemy.exc.SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            shown = url.render_as_string(hide_password=True)
            raise PipelineError(f"cannot count the source rows at {shown}: {detail}") from None
        finally:
            engine.dispose()


def decide(new: int, min_new_rows: int, verdict: str | None) -> Decision:
    """Whether to retrain, and why, from the rows new since the snapshot and monitoring's verdict."""
    reasons = ["monitoring alerted"] if verdict == "alert" else []
    if new >= min_new_rows:
        reasons.append(f"{new} new rows since the snapshot (at least {min_new_rows})")
    if reasons:
        return Decision(True, " and ".join(reasons), new)
    return Decision(False, f"{new} new rows (fewer than {min_new_rows}) and no alert", new)


def new_rows(project: Project) -> int:
    """The source's rows that the current snapshot lacks: newer than its newest key, or (without
    ``ingest.key``) beyond its row count."""
    extent = snapshot_extent(project)
    folder = project.root / project.pipeline
    if project.params.ingest.key is not None and extent.get("key") == project.params.ingest.key:
        return source_rows(project.params.ingest, folder, newer_than=extent["newest"])
    return source_rows(project.params.ingest, folder) - int(extent["rows"])


def snapshot_extent(project: Project) -> dict[str, Any]:
    """The current snapshot's extent, from the metrics file the ingest stage declares."""
    from mlpipe.registry.comparison import stage_paths

    dvc_yaml = (project.root / project.pipeline / "dvc.yaml").read_text(encoding="utf-8")
    where, declared = stage_paths(dvc_yaml, project.pipeline, "metrics", name="ingest")
    if not declared or not (project.root / declared[0]).is_file():
        raise RegistryError(f"{where}: no ingest metrics with the snapshot's rows: run `dvc repro` first")
    return json.loads((project.root / declared[0]).read_text(encoding="utf-8"))


def monitoring_verdict(path: Path) -> str | None:
    """The verdict of the last ``mlpipe monitor`` run (its metrics file), or None if there is none."""
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("verdict")


def dvc(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project.root, capture_output=True, text=True
    )


def retrain(project: Project, decision: Decision) -> str:
    """Re-snapshot, reproduce, commit, register and assign; return the new version's tag.

    Raises:
        RegistryError: if the tree has uncommitted changes, or the gate refused the new model.
    """
    from mlpipe.registry import comparison
    from mlpipe.registry import tags as registry

    if git(project.root, "status", "--porcelain", "--untracked-files=no").strip():
        raise RegistryError("uncommitted changes: commit them, then retrain (a retraining is its own commit)")
    pipeline = str(Path(project.pipeline or ".", "dvc.yaml"))
    snapshot = dvc(project, "repro", "--force", "--single-item", f"{pipeline}:ingest")
    if snapshot.returncode != 0:
        raise PipelineError(f"re-snapshot failed: {last_error(snapshot)}")
    run = dvc(project, "repro", pipeline)
    if run.returncode != 0:
        dvc_yaml = (project.root / pipeline).read_text(encoding="utf-8")
        relative = comparison.gate_path(dvc_yaml, project.pipeline)
        verdict = project.root / relative
        result = json.loads(verdict.read_text(encoding="utf-8")) if verdict.is_file() else {}
        if result.get("passed") is False:
            from mlpipe.evaluation import gate

            failed = "; ".join(gate.failures(result))
            raise RegistryError(
                f"the retrained model failed the gate, not registering: {failed} (see {relative})"
            )
        raise PipelineError(f"dvc repro failed: {last_error(run)}")
    git(project.root, "add", "--update", "--", project.pipeline or ".")  # what the run changed, no stray file
    if git(project.root, "status", "--porcelain", "--untracked-files=no").strip():
        git(project.root, "commit", "--quiet", "-m", f"retrain {project.artifact}: {decision.reason}")
    tag = registry.register(project)
    from gto import api

    stage = project.params.retrain.stage if project.params.retrain else "challenger"
    api.assign(str(project.root), project.artifact, stage, version=tag.rsplit("@", 1)[1])
    return tag


def last_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1].strip()
