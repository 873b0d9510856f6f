"""Signed bundles: the package stage signs with the key from the environment, and a trusted public
key makes the predictor, ``mlpipe predict``, ``mlpipe serve`` and Dask workers refuse any other."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from tests.serving.bundles import refresh_checksums
from tests.serving.conftest import run_package
from tests.serving.test_server import serving, settled

from mlpipe.bundle import layout as bundle
from mlpipe.bundle import signing
from mlpipe.bundle.layout import BundleError
from mlpipe.cli import main as cli
from mlpipe.serving.cluster import worker_predictor
from mlpipe.serving.predictor import Predictor


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    return {name: signing.generate(folder / f"{name}.pem")[0] for name in ("builder", "stranger")}


@pytest.fixture(scope="module")
def signed(built: Path, keys: dict[str, Path], tmp_path_factory) -> Path:
    """The package stage's bundle of ``built``'s model, signed with the builder's key (given as text)."""
    out = tmp_path_factory.mktemp("signed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(signing.SIGNING_KEY_ENV, keys["builder"].read_text())
        run_package(built, out / "bundle", out / "verdict.json")
    return out / "bundle"


def public(keys: dict[str, Path], name: str) -> Path:
    return Path(f"{keys[name]}.pub")


def key_id(keys: dict[str, Path], name: str) -> str:
    return signing.key_id(signing.public_key(public(keys, name)))


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path: Path, capsys):
    key = tmp_path / "signing.pem"
    assert cli.main(["keygen", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "BEGIN PUBLIC KEY" in Path(f"{key}.pub").read_text()
    assert "keep it out of git" in capsys.readouterr().err
    before = key.read_bytes()
    assert cli.main(["keygen", str(key)]) == 1
    assert "exists; refusing to overwrite a key" in capsys.readouterr().err
    assert key.read_bytes() == before


def test_the_package_stage_signs_and_a_trusted_key_loads_only_bundles_it_signed(
    signed: Path, built: Path, keys: dict[str, Path], record: dict
):
    checksums = (signed / bundle.CHECKSUMS).read_bytes()
    # the same files as unsigned, plus the signature (not listed: it signs the list)
    assert bundle.list_files(signed) == sorted([*bundle.list_files(built / "bundle"), bundle.SIGNATURE])
    assert bundle.SIGNATURE.encode() not in checksums
    # Ed25519 signs deterministically: a signed repro gives the same bytes
    builder = signing.private_key(keys["builder"])
    assert (signed / bundle.SIGNATURE).read_text() == signing.sign(checksums, builder)
    trusted = Predictor(signed, trusted_key=public(keys, "builder"))
    assert trusted.predict_one(record) == Predictor(built / "bundle").predict_one(record)

    stranger = Predictor(signed, trusted_key=public(keys, "stranger"))
    with pytest.raises(BundleError, match=f"signed by key {key_id(keys, 'builder')}, not by the trusted key"):
        stranger.load()
    with pytest.raises(BundleError, match="SHA256SUMS.sig is missing: the bundle is unsigned"):
        Predictor(built / "bundle", trusted_key=public(keys, "builder")).load()
    with pytest.raises(BundleError, match="not by the trusted key"):  # Dask workers check it too
        worker_predictor(
            str(signed), trusted.version, 1, signing.public_pem(signing.public_key(public(keys, "stranger")))
        )


def test_a_signed_bundle_altered_and_rehashed_is_refused(signed: Path, keys: dict[str, Path], tmp_path: Path):
    copy = Path(shutil.copytree(signed, tmp_path / "bundle"))
    meta = (copy / bundle.METADATA).read_text()
    (copy / bundle.METADATA).write_text(meta.replace('"max": 35', '"max": 99', 1))
    refresh_checksums(copy)  # every checksum matches again: only the signature can tell
    assert Predictor(copy).load().metadata["inputs"]["age"]["max"] == 99
    with pytest.raises(
        BundleError, match="the signature does not match the checksums; the bundle was altered"
    ):
        Predictor(copy, trusted_key=public(keys, "builder")).load()
    (copy / bundle.SIGNATURE).write_text("ed25519 only-two-parts\n")
    with pytest.raises(BundleError, match="SHA256SUMS.sig: malformed"):
        Predictor(copy, trusted_key=public(keys, "builder")).load()


def test_a_bad_signing_key_fails_the_package_stage_before_it_writes(built: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv(signing.SIGNING_KEY_ENV, str(tmp_path / "absent.pem"))
    with pytest.raises(signing.SignatureError, match="signing key: cannot read .*absent.pem"):
        run_package(built, tmp_path / "bundle", tmp_path / "verdict.json")
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "verdict.json").exists()


def test_predict_and_serve_take_the_trusted_key_from_the_environment(
    signed: Path, built: Path, keys: dict[str, Path], tmp_path: Path, monkeypatch, capsys
):
    rows = tmp_path / "rows.csv"
    shutil.copy(Path(__file__).resolve().parents[2] / "data" / "examples" / "sessions.csv", rows)
    monkeypatch.setenv(signing.TRUSTED_KEY_ENV, str(public(keys, "builder")))
    assert cli.main(["predict", str(rows), "-o", str(tmp_path / "out.csv"), "--bundle", str(signed)]) == 0
    assert (
        cli.main(["predict", str(rows), "-o", str(tmp_path / "no.csv"), "--bundle", str(built / "bundle")])
        == 1
    )
    assert "the bundle is unsigned, and a trusted key was given" in capsys.readouterr().err
    assert not (tmp_path / "no.csv").exists()
    with serving("--bundle", str(built / "bundle"), wait_ready=False) as client:  # the env's key
        ready = settled(client)
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        assert "the bundle is unsigned" in ready.json()["error"]
