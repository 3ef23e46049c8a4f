"""Verify the audit chain and its signed checkpoints; exit 1 naming the first bad sequence."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from audit.checkpoints import SigningKeyError, load_public_key
from audit.verify import verify
from audit.witness import FileWitness, WitnessError, configured_witness


class Command(BaseCommand):
    help = "Walk the audit chain and checkpoints, recompute every hash and check every signature."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--chunk-size", type=int, default=10_000, help="Rows fetched per round trip.")
        parser.add_argument(
            "--public-key",
            action="append",
            default=[],
            metavar="PEM_FILE",
            help=(
                "Trust this public key (repeatable) and the successors it endorsed, instead of every "
                "key registered in the database."
            ),
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="Processes sharing the walk (default: the CPU count on PostgreSQL, 1 on SQLite).",
        )
        parser.add_argument(
            "--witness-dir",
            metavar="DIR",
            help="Compare with the file witness in DIR instead of the configured witness.",
        )
        parser.add_argument(
            "--no-witness", action="store_true", help="Check the database alone (no witness comparison)."
        )
        parser.add_argument("--database", default="default")

    def handle(self, **options) -> None:
        try:
            # None: the keys registered in the database (see audit.checkpoints.key_ring)
            keys = [load_public_key(Path(p).read_text()) for p in options["public_key"]] or None
        except (OSError, SigningKeyError, ValueError) as exc:
            raise CommandError(f"cannot load the public key: {exc}")
        workers = options["workers"]
        if workers is None:
            vendor = connections[options["database"]].vendor
            workers = min(os.cpu_count() or 1, 8) if vendor == "postgresql" else 1
        try:
            if options["no_witness"]:
                witness = None
            elif options["witness_dir"]:
                witness = FileWitness(options["witness_dir"])
            else:
                witness = configured_witness()
            result = verify(
                using=options["database"],
                chunk_size=options["chunk_size"],
                public_keys=keys,
                workers=workers,
                witness=witness,
            )
        except WitnessError as exc:
            raise CommandError(f"cannot read the witness: {exc}")
        witnessed = (
            "no witness" if result.witnessed is None else f"{result.witnessed} witness records compared"
        )
        self.stdout.write(
            f"{result.events} events, {result.checkpoints} checkpoints checked, {witnessed}, in "
            f"{result.seconds:.2f}s ({result.rate:,.0f} events/s)"
        )
        problem = result.first_problem
        if problem is not None:
            self.stderr.write(f"FAILED at sequence {problem.sequence}: {problem.reason}")
            raise SystemExit(1)
        self.stdout.write(f"OK: chain verifies up to sequence {result.head_sequence}")
