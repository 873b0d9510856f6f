"""``mlpipe keygen``, and ``--trusted-key`` for the commands that load a bundle."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlpipe.cli.options import command


def trusted_pem(args: argparse.Namespace) -> bytes | None:
    """``--trusted-key`` (or ``MLPIPE_TRUSTED_KEY``) as a public key's PEM, checked; None if unset."""
    if not args.trusted_key:
        return None
    from mlpipe.bundle import signing

    return signing.public_pem(signing.public_key(args.trusted_key))


def add_trusted_key(parser: argparse.ArgumentParser) -> None:
    from mlpipe.bundle.signing import TRUSTED_KEY_ENV, from_env

    parser.add_argument(
        "--trusted-key",
        default=from_env(TRUSTED_KEY_ENV),
        help="an Ed25519 public key (PEM file): refuse a bundle it did not sign"
        f" (default: ${TRUSTED_KEY_ENV}, if set)",
    )


def run(args: argparse.Namespace) -> None:
    from mlpipe.bundle import signing

    private, public = signing.generate(args.path)
    key_id = signing.key_id(signing.public_key(public))
    print(
        f"mlpipe: wrote {private} (private, mode 0600: keep it out of git; give it to the package stage"
        f" as ${signing.SIGNING_KEY_ENV}) and {public} (public, key {key_id}: for --trusted-key)",
        file=sys.stderr,
    )


def add(commands: Any) -> None:
    """``mlpipe keygen``: a key pair for signing bundles."""
    keygen = command(
        commands,
        "keygen",
        "write a new Ed25519 key pair for signing bundles (PATH and PATH.pub)",
        "The package stage signs a bundle's checksums with the private key when MLPIPE_SIGNING_KEY"
        " holds its path or text; serve and predict with --trusted-key PATH.pub refuse any bundle it"
        " did not sign. Existing files are never overwritten.",
    )
    keygen.add_argument(
        "path", help="the private key's file, e.g. ~/.mlpipe/signing.pem (outside the repository)"
    )
    keygen.set_defaults(run=run)
