"""dvc.yaml is the map of the project: check it against the code it runs."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from mlpipe.core.params import Params

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mlpipe"


def mlpipe_imports(module: str) -> set[str]:
    """The mlpipe modules ``module`` imports, directly or through other mlpipe modules, dotted
    below ``mlpipe`` (``features``, ``serving.schema``). A subpackage's ``__init__`` holds only its
    docstring and is not counted."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        tree = ast.parse((PACKAGE / f"{name.replace('.', '/')}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "mlpipe":
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlpipe."):
                dotted = node.module.removeprefix("mlpipe.")
                if (PACKAGE / dotted.replace(".", "/")).is_dir():  # a subpackage: its modules named
                    todo += [f"{dotted}.{alias.name}" for alias in node.names]
                else:
                    todo.append(dotted)
            elif isinstance(node, ast.Import):
                todo += [a.name.removeprefix("mlpipe.") for a in node.names if a.name.startswith("mlpipe.")]
    return seen


def code_deps(path: str) -> set[str]:
    """The modules a dependency names, dotted below ``mlpipe``: ``{"serving.schema"}`` for
    ``.../src/mlpipe/serving/schema.py``, every module inside for a folder; empty for data."""
    if "src/mlpipe/" not in path:
        return set()
    target = PACKAGE / path.split("src/mlpipe/")[1]
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return {
        ".".join(f.relative_to(PACKAGE).with_suffix("").parts) for f in files if not f.name.startswith("__")
    }


def folders() -> dict[str, set[str]]:
    """Each subpackage of ``mlpipe`` (``serving.http``) with every module inside it."""
    return {
        ".".join(d.relative_to(PACKAGE).parts): code_deps(f"src/mlpipe/{d.relative_to(PACKAGE)}")
        for d in PACKAGE.rglob("*")
        if d.is_dir() and (d / "__init__.py").exists()
    }


PIPELINES = [
    ROOT / "dvc.yaml",
    ROOT / "pipelines" / "dropout" / "dvc.yaml",
    ROOT / "pipelines" / "early_warning" / "dvc.yaml",
]


def stages() -> dict:
    """Every stage of every pipeline, keyed ``<pipeline folder>:<stage>``; each names its module."""
    found = {}
    for path in PIPELINES:
        for name, stage in yaml.safe_load(path.read_text())["stages"].items():
            found[f"{path.parent.relative_to(ROOT)}:{name}"] = stage
    return found


def module(key: str) -> str:
    """The module a stage runs, dotted below ``mlpipe``: the early-warning pipeline's stages are
    in their own folder."""
    folder, name = key.split(":")
    return f"early_warning.{name}" if folder.endswith("early_warning") else name


def sections(key: str) -> set[str]:
    from mlpipe.core.history_params import EarlyWarningParams

    kind = EarlyWarningParams if key.split(":")[0].endswith("early_warning") else Params
    return set(kind.__dataclass_fields__)


def test_each_stage_runs_its_own_module_and_depends_on_exactly_the_code_it_imports():
    for key, stage in stages().items():
        name = module(key)
        assert stage["cmd"].split()[:3] == ["python", "-m", f"mlpipe.{name}"], key
        named = set().union(*(code_deps(d) for d in stage["deps"]))
        assert named == mlpipe_imports(name), f"stage {key}: deps differ from its imports"


def test_a_stage_names_a_folder_whose_modules_it_all_uses():
    """So that a stage's deps fit on one screen: ``src/mlpipe/core`` rather than its six files."""
    for key, stage in stages().items():
        files = {d for d in stage["deps"] if d.endswith(".py")}
        for folder, modules in folders().items():
            listed = {m for m in modules if any(code_deps(f) == {m} for f in files)}
            assert listed != modules, (
                f"stage {key}: name src/mlpipe/{folder.replace('.', '/')}, not its files"
            )


def test_stage_params_are_whole_sections_named_after_stages():
    for key, stage in stages().items():
        name, known = key.split(":")[1], sections(key)
        if name == "preprocess" and "history" in known:  # early warning: the tables' section
            name = "history"
        assert name in known, f"no params section for stage {key}"
        assert set(stage["params"]) <= known
        assert name in stage["params"], f"stage {key} does not depend on its own params section"
        assert all("." not in p for p in stage["params"]), f"{name} depends on single keys"


def test_every_path_argument_is_declared_as_dep_or_out():
    for name, stage in stages().items():
        words = stage["cmd"].split()
        paths = [words[i + 1] for i, w in enumerate(words) if w.startswith("--") and i + 1 < len(words)]
        declared = set(stage.get("deps", []))
        for key in ("outs", "metrics", "plots"):
            for entry in stage.get(key, []):
                declared |= set(entry) if isinstance(entry, dict) else {entry}
        for path in paths:
            if path == "dvc.lock":  # DVC's own record, read for lineage; it cannot be a dep
                continue
            covered = any(
                path == d or path.startswith(d.rstrip("/") + "/") or d.startswith(path + "/")
                for d in declared
            )
            assert covered, f"stage {name}: {path} is neither a dep nor an out"


def test_no_path_literals_in_stage_code():
    for name in {module(k) for k in stages()}:
        source = (PACKAGE / f"{name.replace('.', '/')}.py").read_text()
        for literal in ("data/", "models/", "metrics/"):
            assert literal not in source, f"{name}.py holds a path; paths belong in dvc.yaml"


def test_the_packaged_artifact_is_declared_under_the_params_name():
    for path in PIPELINES:
        pipeline = yaml.safe_load(path.read_text())
        name = yaml.safe_load((path.parent / "params.yaml").read_text())["package"]["name"]
        artifact = pipeline["artifacts"][name]
        assert artifact["type"] == "model"
        assert artifact["path"] in pipeline["stages"]["package"]["outs"]


def test_every_pipeline_loads_its_params_strictly():
    from mlpipe.core.params import load_early_warning_params, load_params

    for path in PIPELINES:
        early = path.parent.name == "early_warning"
        (load_early_warning_params if early else load_params)(str(path.parent / "params.yaml"))


def test_the_committed_locks_record_the_code_as_it_is():
    """Every ``.py`` dependency's md5 in each ``dvc.lock`` matches the file: a lock left stale after
    a code change would make a fresh clone's ``dvc repro`` rewrite it (and dirty ``git status``)."""
    import hashlib

    for pipeline in PIPELINES:
        lock = yaml.safe_load((pipeline.parent / "dvc.lock").read_text())
        for name, stage in lock["stages"].items():
            for dep in stage["deps"]:
                if dep["path"].endswith(".py"):
                    path = (pipeline.parent / dep["path"]).resolve()
                    actual = hashlib.md5(path.read_bytes()).hexdigest()
                    assert actual == dep["md5"], (
                        f"{pipeline.parent.name}:{name}: {dep['path']} changed since the lock"
                    )


def test_every_uncached_output_is_a_metric_or_plot_so_the_run_cache_applies():
    # DVC skips the run cache for a stage with a `cache: false` entry under `outs` (only metrics
    # and plots may be git-tracked): going back to earlier params would then retrain.
    for key, stage in stages().items():
        for entry in stage.get("outs", []):
            if isinstance(entry, dict):
                (path, flags), *_ = entry.items()
                assert flags.get("cache", True), f"stage {key}: output {path} is `cache: false` under outs"
