"""Versions, the S3 remote and sweeps: the whole story in one repository, as a team would live it,
told by the README itself.

The module's repository is a fresh clone of the team's (a bare git repository here) whose two demo
pipelines ``dvc repro --all-pipelines`` built (what ``make repro`` runs). The story is every shell
line of the README's versions section, extracted from README.md so the text cannot drift from what
works, run top to bottom against a real S3 API server on loopback: register and push v1, promote
it, an experiment becomes v2, compare, promote, roll back, fetch, serve by stage and at a checked
out version, back to main, gc. Each line must exit 0.

What a line may not say verbatim is replaced, and each replacement is checked to be in the text:
the bucket and endpoint (the test's server), ``/tmp/`` (the test's folder), and the credentials
line (the fixture sets the variables). ``mlpipe serve`` runs in the background until ``/ready``
answers 200, then is stopped; what it served is checked afterwards. ``mlpipe gc`` gets its "y".

The tests after it use that repository for what the README does not walk through: a colleague's
clone pulls v1 of both pipelines from S3 bit for bit; register refuses a tree HEAD did not build
and a failed gate; promote refuses a regression; fetch refuses a folder in use; ``mlpipe fsck``
finds cache objects DVC trusts (flipped in place, deleted, v1's) and repairs them; gc is refused
while a version is unpushed; a corrupted object on the remote fails the pull and writes nothing;
and a sweep runs through the DVC queue.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from tests.pipeline.repo import ROOT, make_repo, set_params, sh, user_env
from tests.serving.test_server import free_port, serving

pytestmark = pytest.mark.pipeline
NAME = "study-time"
SECTION = "Model versions and the S3 remote"
PREFIX = "team"  # the remote's prefix in the test bucket


# Wait for the server started in the background: /ready 200 within 90 s, or fail if it exits.
WAIT = """\
import json, sys, time, urllib.request
port, pid, served = sys.argv[1:]
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as answer:
            with open(served, "a") as out:
                out.write(json.dumps(json.load(answer)) + "\\n")
            sys.exit(0)
    except OSError:
        pass
    try:
        open(f"/proc/{pid}/stat")
    except FileNotFoundError:
        sys.exit("mlpipe serve exited before it was ready")
    time.sleep(0.2)
sys.exit("mlpipe serve was not ready within 90 s")
"""

# Defined before every line: `mlpipe serve` in the background until ready, then stopped.
PRELUDE = """\
mlpipe() {
  if [ "$1" = serve ]; then
    command mlpipe "$@" --port "$README_PORT" >> "$README_SERVED.log" 2>&1 &
    local pid=$! rc=0
    python "$README_WAIT" "$README_PORT" "$pid" "$README_SERVED" || rc=1
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    return $rc
  fi
  command mlpipe "$@"
}
"""


def readme_lines(section: str) -> list[str]:
    """The shell lines of a README section's ```bash blocks, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    blocks = re.findall(r"```bash\n(.*?)```", text[start:end], re.S)
    joined = (re.sub(r"\\\n\s*", " ", block) for block in blocks)
    return [line.strip() for block in joined for line in block.splitlines() if line.strip()]


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under a folder."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def use_remote(repo: Path, s3) -> None:
    """Point a clone's remote at the test bucket, per user, as the README says."""
    sh(repo, "dvc", "remote", "modify", "--local", "storage", "url", f"s3://{s3.bucket}/{PREFIX}")
    sh(repo, "dvc", "remote", "modify", "--local", "storage", "endpointurl", s3.endpoint)


def rmse_at(repo: Path, rev: str) -> float:
    return json.loads(sh(repo, "git", "show", f"{rev}:metrics/evaluate.json").stdout)["model"]["rmse"]


def run_readme(repo: Path, s3, scratch: Path) -> Path:
    """Run the README section's lines in ``repo``; the /ready answers of what it served, a line each."""
    replaced = {
        "s3://my-bucket/ml/study-time": f"s3://{s3.bucket}/{PREFIX}",
        "https://minio.example.com:9000": s3.endpoint,
        "/tmp/": f"{scratch}/",
    }
    lines = readme_lines(SECTION)
    credentials = [line for line in lines if line.startswith("export AWS_ACCESS_KEY_ID=")]
    assert len(credentials) == 1, "the README's credentials line moved: update this test"
    lines.remove(credentials[0])
    text = "\n".join(lines)
    for placeholder in replaced:
        assert placeholder in text, f"{placeholder!r} is no longer in the README: update this test"
    served = scratch / "served.jsonl"
    wait = scratch / "wait_ready.py"
    wait.write_text(WAIT)
    env = user_env(repo) | {
        "README_PORT": str(free_port()),
        "README_SERVED": str(served),
        "README_WAIT": str(wait),
    }
    for line in lines:
        command = line
        for placeholder, value in replaced.items():
            command = command.replace(placeholder, value)
        done = subprocess.run(
            ["bash", "-c", PRELUDE + command],
            cwd=repo,
            env=env,
            input="y\n",
            text=True,
            capture_output=True,
            timeout=600,
        )
        log = Path(f"{served}.log")
        assert done.returncode == 0, textwrap.dedent(f"""\
            README line failed (exit {done.returncode}): {line}
            stdout: {done.stdout[-2000:]}
            stderr: {done.stderr[-3000:]}
            server: {log.read_text()[-2000:] if log.exists() else ""}""")
    return served


@pytest.fixture(scope="module")
def story(tmp_path_factory, s3) -> dict:
    """The README's versions section, run in a fresh clone of the team's repository."""
    place = tmp_path_factory.mktemp("team")
    origin = make_repo(place / "origin", project_config=True, dropout=True)
    bare = place / "team.git"
    sh(place, "git", "clone", "-q", "--bare", str(origin), str(bare))
    repo = place / "project"
    sh(place, "git", "clone", "-q", str(bare), str(repo))
    sh(repo, "dvc", "repro", "--all-pipelines")  # make repro, without the install
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "both demo pipelines built")
    scratch = place / "tmp"
    scratch.mkdir()
    served = run_readme(repo, s3, scratch)
    bundles = {"v1.0.0": digest(scratch / "v1"), "v2.0.0": digest(repo / "models" / "package")}
    return {"repo": repo, "bare": bare, "s3": s3, "scratch": scratch, "served": served, "bundles": bundles}


def test_the_readme_lines_registered_pushed_promoted_rolled_back_and_served(story):
    repo, scratch = story["repo"], story["scratch"]
    assert sh(repo, "git", "tag", "--list", f"{NAME}@*").stdout.split() == [
        f"{NAME}@v1.0.0",
        f"{NAME}@v2.0.0",
    ]
    stages = [f"{NAME}#prod#1", f"{NAME}#prod#2", f"{NAME}#prod#3"]
    assert set(sh(story["bare"], "git", "tag").stdout.split()) == {
        f"{NAME}@v1.0.0",
        f"{NAME}@v2.0.0",
        *stages,
    }
    assert sh(repo, "gto", "show", f"{NAME}#prod", "--ref").stdout.strip() == f"{NAME}@v1.0.0"
    assert rmse_at(repo, f"{NAME}@v2.0.0") < rmse_at(repo, f"{NAME}@v1.0.0")  # the candidate won
    assert story["bundles"]["v1.0.0"] != story["bundles"]["v2.0.0"]
    assert digest(scratch / "prod") == story["bundles"]["v1.0.0"]  # prod holds v1 again
    v1 = json.loads((scratch / "v1" / "metadata.json").read_text())["version"]
    versions = [
        json.loads(line)["models"]["champion"]["version"] for line in story["served"].read_text().splitlines()
    ]
    assert versions == [v1, v1]  # serve --stage prod, then serve at the checked-out v1
    assert sh(repo, "git", "status", "--porcelain").stdout == ""
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status").stdout
    assert "Cache and remote 'storage' are in sync" in sh(repo, "dvc", "status", "-c").stdout
    config = (repo / ".dvc" / "config").read_text()
    assert "verify = true" in config and "endpointurl" not in config and "secret" not in config.lower()


def test_a_colleagues_clone_pulls_v1_of_both_pipelines_bit_for_bit_and_serves_it(story, tmp_path):
    clone = tmp_path / "colleague"
    sh(tmp_path, "git", "clone", "-q", str(story["bare"]), str(clone))
    sh(clone, "git", "checkout", "-q", f"{NAME}@v1.0.0")
    use_remote(clone, story["s3"])
    sh(clone, "dvc", "pull")
    assert digest(clone / "models" / "package") == story["bundles"]["v1.0.0"]
    assert (clone / "pipelines" / "dropout" / "models" / "package" / "SHA256SUMS").exists()
    assert "Data and pipelines are up to date" in sh(clone, "dvc", "status").stdout
    assert "in sync" in sh(clone, "dvc", "status", "-c").stdout
    version = json.loads((clone / "models" / "package" / "metadata.json").read_text())["version"]
    with serving("--bundle", str(clone / "models" / "package")) as client:
        assert client.get("/ready").json()["models"]["champion"]["version"] == version


def test_metrics_diff_between_tags_and_compare(story):
    repo = story["repo"]
    diff = json.loads(sh(repo, "dvc", "metrics", "diff", f"{NAME}@v1.0.0", f"{NAME}@v2.0.0", "--json").stdout)
    change = diff["metrics/evaluate.json"]["model.rmse"]
    assert change["old"] == rmse_at(repo, f"{NAME}@v1.0.0") and change["new"] == rmse_at(
        repo, f"{NAME}@v2.0.0"
    )
    ok = sh(repo, "mlpipe", "compare", "v1.0.0", "v2.0.0")
    assert "metrics/evaluate.json  model.rmse" in ok.stdout
    regressed = sh(repo, "mlpipe", "compare", "v2.0.0", "v1.0.0", check=False)
    assert regressed.returncode == 1
    assert (
        f"mlpipe: error: {NAME}@v1.0.0 is worse than {NAME}@v2.0.0 beyond the tolerance 0.02"
        in regressed.stderr
    )


def test_promotion_refuses_a_regression_and_rollback_restores(story):
    repo = story["repo"]  # prod holds v1 (the README rolled back from v2)
    again = sh(repo, "mlpipe", "promote", "v1.0.0", check=False)
    assert again.returncode == 1 and f"{NAME}@v1.0.0 is in prod already: nothing to promote" in again.stderr
    promoted = sh(repo, "mlpipe", "promote", "v2.0.0")  # back to v2, which prod held before
    assert f"is now in prod (push it: git push origin {NAME}#prod#4)" in promoted.stderr
    refused = sh(repo, "mlpipe", "promote", "v1.0.0", check=False)
    assert refused.returncode == 1 and "not promoting" in refused.stderr and "model.rmse" in refused.stderr
    sh(repo, "mlpipe", "rollback")
    assert sh(repo, "gto", "show", f"{NAME}#prod", "--ref").stdout.strip() == f"{NAME}@v1.0.0"
    assert sh(repo, "git", "tag", "--list", f"{NAME}#prod#*").stdout.split() == [
        f"{NAME}#prod#{n}" for n in range(1, 6)
    ]


def test_registration_refuses_a_tree_that_is_not_what_head_built(story):
    repo = story["repo"]
    params = repo / "params.yaml"
    original = params.read_text()
    set_params(repo, evaluate={"linear_alpha": 7.0})
    dirty = sh(repo, "mlpipe", "register", "--version", "v8.0.0", check=False)
    assert dirty.returncode == 1 and "uncommitted changes (params.yaml): commit them" in dirty.stderr
    sh(repo, "git", "commit", "-qam", "params changed, pipeline not run")
    stale = sh(repo, "mlpipe", "register", "--version", "v8.0.0", check=False)
    assert stale.returncode == 1 and "dvc.yaml is not up to date (evaluate" in stale.stderr
    assert "run `dvc repro`, commit, then register" in stale.stderr
    assert f"{NAME}@v8.0.0" not in sh(repo, "git", "tag").stdout
    sh(repo, "git", "reset", "-q", "--hard", "HEAD~1")
    assert params.read_text() == original


def test_registration_refuses_a_failed_gate(story):
    repo = story["repo"]
    set_params(
        repo,
        package={
            "gate": {
                **yaml.safe_load((repo / "params.yaml").read_text())["package"]["gate"],
                "max": {"rmse": 0.01},
            }
        },
    )
    assert sh(repo, "dvc", "repro", check=False).returncode != 0
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "a gate that fails")
    refused = sh(repo, "mlpipe", "register", "--version", "v9.0.0", check=False)
    assert (
        refused.returncode == 1 and "the gate failed at HEAD (checks.rmse): not registering" in refused.stderr
    )
    assert f"{NAME}@v9.0.0" not in sh(repo, "git", "tag").stdout
    sh(repo, "git", "reset", "-q", "--hard", "HEAD~1")
    sh(repo, "dvc", "checkout", "-q")


def test_fetch_refuses_a_folder_in_use_before_downloading(story, tmp_path):
    repo = story["repo"]
    head = sh(repo, "git", "rev-parse", "HEAD").stdout
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine\n")
    refused = sh(repo, "mlpipe", "fetch", "v1.0.0", "-o", str(taken), check=False)
    assert refused.returncode == 1 and "exists and is not an empty folder" in refused.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # nothing else written
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    assert sh(repo, "git", "rev-parse", "HEAD").stdout == head


def cache_object(repo: Path, md5: str) -> Path:
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def bundle_file_md5(repo: Path, rev: str, name: str) -> str:
    """The md5 of one file of the bundle that ``rev``'s lock records (from the cached listing)."""
    lock = yaml.safe_load(sh(repo, "git", "show", f"{rev}:dvc.lock").stdout)
    listing = next(o["md5"] for o in lock["stages"]["package"]["outs"] if o["path"] == "models/package")
    return next(
        e["md5"] for e in json.loads(cache_object(repo, listing).read_bytes()) if e["relpath"] == name
    )


def flip_in_place(path: Path) -> bytes:
    """Flip one byte of a cache object keeping its size and mtime (what DVC's state trusts); the original."""
    original, before = path.read_bytes(), path.stat()
    path.chmod(0o644)
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    path.chmod(before.st_mode)
    return original


def test_fsck_finds_objects_dvc_trusts_and_repairs_them_from_the_remote(story):
    repo = story["repo"]
    onnx = cache_object(repo, bundle_file_md5(repo, "HEAD", "model.onnx"))
    original = flip_in_place(onnx)
    preprocessor = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["preprocess"]["outs"]
    gone = cache_object(repo, next(o["md5"] for o in preprocessor if o["path"] == "models/preprocessor.json"))
    gone.unlink()
    shutil.rmtree(repo / "models" / "package")
    sh(repo, "dvc", "checkout", "models/package")  # DVC copies the flipped object out as it is
    assert (repo / "models" / "package" / "model.onnx").read_bytes() != original

    found = sh(repo, "mlpipe", "fsck", check=False)
    assert found.returncode == 1
    assert f"models/package/model.onnx (workspace): corrupted in the cache: {onnx}" in found.stderr
    assert f"models/preprocessor.json (workspace): missing from the cache: {gone}" in found.stderr
    assert "models/package/model.onnx (workspace): differs from dvc.lock" in found.stderr
    assert "3 damaged or missing objects (mlpipe fsck --repair fetches them again)" in found.stderr

    repaired = sh(repo, "mlpipe", "fsck", "--repair")
    assert "0 problems" in repaired.stderr
    assert onnx.read_bytes() == original and gone.is_file()
    assert (repo / "models" / "package" / "model.onnx").read_bytes() == original
    assert sh(repo, "git", "status", "--porcelain").stdout == ""

    # v1's own objects: the README's `mlpipe gc -- -w` removed them here, the remote holds them
    missing = sh(repo, "mlpipe", "fsck", "--all-tags", check=False)
    assert missing.returncode == 1 and f"({NAME}@v1.0.0): missing from the cache" in missing.stderr
    sh(repo, "mlpipe", "fsck", "--all-tags", "--repair")
    old = cache_object(repo, bundle_file_md5(repo, f"{NAME}@v1.0.0", "model.onnx"))
    assert old != onnx
    original = flip_in_place(old)  # named by v1 only: found with --all-tags, by that version
    assert sh(repo, "mlpipe", "fsck").returncode == 0
    tagged = sh(repo, "mlpipe", "fsck", "--all-tags", check=False)
    assert tagged.returncode == 1 and f"({NAME}@v1.0.0): corrupted in the cache: {old}" in tagged.stderr
    sh(repo, "mlpipe", "fsck", "--all-tags", "--repair")
    assert old.read_bytes() == original


def test_gc_is_refused_while_a_version_is_unpushed(story):
    repo = story["repo"]
    # A second pipeline whose output this clone never built: dvc.lock names it, no cache or remote
    # holds it. gc cannot lose it and no push can send it, so it must not block gc.
    other = repo / "pipelines" / "other"
    other.mkdir(parents=True)
    (other / "dvc.yaml").write_text(
        "stages:\n  other:\n    cmd: python -c \"open('out.txt', 'w').write('elsewhere')\"\n"
        "    outs: [out.txt]\n"
    )
    sh(repo, "dvc", "repro", "pipelines/other/dvc.yaml")
    out_md5 = yaml.safe_load((other / "dvc.lock").read_text())["stages"]["other"]["outs"][0]["md5"]
    (repo / ".dvc" / "cache" / "files" / "md5" / out_md5[:2] / out_md5[2:]).unlink()
    (other / "out.txt").unlink()
    set_params(repo, evaluate={"linear_alpha": 3.0})  # a new bundle: metadata records the params
    sh(repo, "dvc", "repro", "dvc.yaml")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "model v3")
    sh(repo, "mlpipe", "register", "--version", "v3.0.0")
    refused = sh(repo, "mlpipe", "gc", "--", "-w", "-f", check=False)
    assert refused.returncode == 1
    assert f"refusing `dvc gc`: registered versions have data that is not on the remote ({NAME}@v3.0.0:" in (
        refused.stderr
    )
    assert "models/package" in refused.stderr and "out.txt" not in refused.stderr
    sh(repo, "dvc", "push", "dvc.yaml")
    sh(repo, "mlpipe", "gc", "--", "-w", "-f")
    sh(repo, "git", "rm", "-rq", "pipelines/other")
    sh(repo, "git", "commit", "-qm", "the other pipeline moved away")
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status").stdout


def test_a_corrupted_object_on_the_remote_fails_the_pull_and_writes_nothing(story, tmp_path):
    repo, s3 = story["repo"], story["s3"]
    lock = yaml.safe_load(sh(repo, "git", "show", f"{NAME}@v1.0.0:dvc.lock").stdout)
    entries = {o["path"]: o["md5"] for o in lock["stages"]["package"]["outs"]}
    listing = json.loads(
        s3.client()
        .get_object(
            Bucket=s3.bucket,
            Key=f"{PREFIX}/files/md5/{entries['models/package'][:2]}/{entries['models/package'][2:]}",
        )["Body"]
        .read()
    )
    onnx_md5 = next(e["md5"] for e in listing if e["relpath"] == "model.onnx")
    key = f"{PREFIX}/files/md5/{onnx_md5[:2]}/{onnx_md5[2:]}"
    original = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=b"not the model")
    try:
        clone = tmp_path / "project"
        sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
        sh(clone, "git", "checkout", "-q", f"{NAME}@v1.0.0")
        use_remote(clone, s3)
        pulled = sh(clone, "dvc", "pull", "models/package", check=False)
        assert pulled.returncode != 0
        assert not (clone / "models" / "package").exists()
    finally:
        s3.client().put_object(Bucket=s3.bucket, Key=key, Body=original)


def test_a_sweep_is_checked_queued_run_ranked_and_the_best_registered(story, tmp_path):
    repo = story["repo"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  train.learning_rat: [0.001, 0.004]\n")
    refused = sh(repo, "mlpipe", "sweep", str(bad), check=False)
    assert refused.returncode == 1 and "unknown key 'train.learning_rat'" in refused.stderr
    assert "Queued" not in sh(repo, "dvc", "queue", "status").stdout
    grid = tmp_path / "grid.yaml"
    # 0.002 is HEAD's (v2's) learning rate: DVC's run cache restores that run instead of training
    grid.write_text("grid:\n  train.learning_rate: [0.002, 0.004]\n")
    queued = sh(repo, "mlpipe", "sweep", str(grid))
    assert "2 experiments queued" in queued.stderr
    sh(repo, "dvc", "queue", "start", "-j", "2")
    deadline = time.monotonic() + 600
    while True:
        status = sh(repo, "dvc", "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status
    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json").stdout)
    experiments = []
    for entry in shown:
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs", []):
                data = rev["data"]
                rmse = data["metrics"]["metrics/evaluate.json"]["data"]["model"]["rmse"]
                experiments.append((rmse, exp.get("name") or rev["name"]))
    assert len(experiments) == 2
    best = min(experiments)[1]
    sh(repo, "dvc", "exp", "apply", best)
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", f"best of the sweep: {best}")
    sh(repo, "mlpipe", "register", "--bump", "major")
    assert f"{NAME}@v4.0.0" in sh(repo, "git", "tag").stdout
    sh(repo, "dvc", "queue", "stop", check=False)
