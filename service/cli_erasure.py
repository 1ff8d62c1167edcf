"""Erasure commands of the ``ownrank`` CLI: erase, audit, receipts, backups, compaction,
key rotation. Defined on ``erasure_app``, whose commands the main app (``cli.py``)
lists after its own; shared options and helpers come from ``cli_common``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ..engine.receipts import verify_receipt
from ..errors import OwnrankError
from ..storage import backup as backups
from .cli_common import DEFAULT_DATA_DIR, DataDir, ModelDir, console, fail, open_engine

# not an app of its own: ``cli`` adds these commands to ``ownrank``'s top level
erasure_app = typer.Typer()

UserArg = Annotated[str, typer.Argument(help="The user id.")]
DirArg = Annotated[Path, typer.Argument(help="Folder.")]


@erasure_app.command()
def erase(
    user_id: UserArg,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the receipt here.")] = None,
) -> None:
    """Erase USER_ID and print the signed receipt (JSON)."""
    with open_engine(data_dir, model_dir) as engine:
        receipt = engine.erase(user_id).as_dict()
    text = json.dumps(receipt, indent=2, sort_keys=True)
    if out is not None:
        out.write_text(text + "\n")
    typer.echo(text)


@erasure_app.command("verify-receipt")
def verify_receipt_command(
    receipt_file: Annotated[Path, typer.Argument(help="A receipt (JSON) from erase.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    public_key: Annotated[
        str | None,
        typer.Option(help="Base64 Ed25519 public key to trust (default: the store's keys)."),
    ] = None,
) -> None:
    """Check a receipt's signature. Exit 0 when valid, 1 when not."""
    try:
        receipt = json.loads(receipt_file.read_text())
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read {receipt_file}: {exc}") from None
    if not isinstance(receipt, dict):
        raise fail("a receipt is a JSON object")
    if public_key is not None:
        keys = {str(receipt.get("key_id")): public_key}
    else:
        from ..engine.engine import RECEIPT_KEYS_DIR
        from ..engine.receipts import ReceiptSigner

        keys_dir = data_dir / "keys" / RECEIPT_KEYS_DIR
        if not keys_dir.is_dir():
            raise fail(f"no receipt keys under {keys_dir}; pass --public-key")
        keys = ReceiptSigner(keys_dir).public_keys()
    if verify_receipt(receipt, keys):
        console.print(f"[green]valid[/green] receipt signed by {receipt['key_id']}")
        return
    console.print("[red]invalid[/red]: the signature does not match a trusted key")
    raise typer.Exit(1)


@erasure_app.command()
def audit(
    user_id: UserArg,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    term: Annotated[
        list[str] | None,
        typer.Option("--term", help="Also scan the files for this text (e.g. a query)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Confirm nothing of USER_ID is left (record, data key, ledger, shared
    contribution, bytes in any file). Exit 0 when clean, 1 when not."""
    terms = {f"term {i + 1}": t.encode() for i, t in enumerate(term or [])}
    with open_engine(data_dir, model_dir) as engine:
        report = engine.audit(user_id, terms)
    result = report.as_dict()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        for name in (
            "record_present",
            "data_key_present",
            "ledger_entries",
            "shared_statistics_consistent",
            "tombstone_erased_at",
            "files_scanned",
            "bytes_scanned",
        ):
            console.print(f"{name}: {result[name]}")
        for finding in report.findings:
            where = f"{finding.term} in {finding.path} @ {finding.offset}"
            if finding.catalog_text:
                console.print(
                    f"found {where}: also catalog text, so the match says nothing about "
                    "the user (not counted)"
                )
            else:
                console.print(f"[red]found[/red] {where}")
        for name, expected in report.chance_matches.items():
            if expected >= 0.01:  # worth saying: a finding may well be chance
                console.print(
                    f"{name}: {expected:.2g} matches expected by chance in "
                    f"{report.bytes_scanned:,} random bytes (a longer id or term avoids this)"
                )
        console.print("[green]clean[/green]" if report.clean else "[red]NOT clean[/red]")
    if not report.clean:
        raise typer.Exit(1)


@erasure_app.command()
def backup(dest: DirArg, data_dir: DataDir = DEFAULT_DATA_DIR, model_dir: ModelDir = None) -> None:
    """Write a compacted copy of the data environment into the empty folder DEST
    (never the keystore: see backup-keystore)."""
    with open_engine(data_dir, model_dir) as engine:
        manifest = engine.backup(dest)
    typer.echo(json.dumps(manifest, indent=2))


@erasure_app.command("backup-keystore")
def backup_keystore(
    root: DirArg,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    retention_days: Annotated[float, typer.Option(min=0.0)] = 7.0,
) -> None:
    """Copy the keystore into ROOT/keystore-<time>/, deleting copies older than the
    retention (keep it below the erasure journal's, 90 days by default)."""
    with open_engine(data_dir, model_dir) as engine:
        manifest = engine.backup_keystore(root, retention_days)
    typer.echo(json.dumps(manifest, indent=2))


def _offline(action: str, run: Callable[[], None]) -> None:
    try:
        run()
    except OwnrankError as exc:
        raise fail(f"{action}: {exc.message}") from None


@erasure_app.command()
def restore(source: DirArg, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Put a data backup in place (service stopped). Users erased since the backup stay
    erased: the next open re-applies the erasure fence (refused for a backup older than
    the fence's horizon)."""
    _offline("restore", lambda: backups.restore_data(source, data_dir))
    console.print(f"restored {source} into {data_dir}")


@erasure_app.command("restore-keystore")
def restore_keystore(source: DirArg, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Put a keystore backup in place (service stopped). The next open re-applies the
    erasure fence: keys of users erased since are destroyed again."""
    _offline("restore-keystore", lambda: backups.restore_keystore(source, data_dir))
    console.print(f"restored keystore {source} into {data_dir}")


@erasure_app.command()
def compact(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Rewrite the data environment and the keystore without free pages (which keep old
    bytes until reused). Needs the service stopped."""
    result: dict[str, dict[str, int]] = {}

    def run() -> None:
        result.update(backups.compact(data_dir))

    _offline("compact", run)
    for name, sizes in result.items():
        console.print(f"{name}: {sizes['bytes_before']} -> {sizes['bytes_after']} bytes")


@erasure_app.command("rotate-signing-key")
def rotate_signing_key(data_dir: DataDir = DEFAULT_DATA_DIR, model_dir: ModelDir = None) -> None:
    """Make a new receipt signing key current (old public keys stay, to verify)."""
    with open_engine(data_dir, model_dir) as engine:
        typer.echo(engine.rotate_signing_key())


@erasure_app.command("rotate-master-key")
def rotate_master_key(data_dir: DataDir = DEFAULT_DATA_DIR, model_dir: ModelDir = None) -> None:
    """Re-wrap every data key under the current master key. Set OWNRANK_MASTER_KEY to
    "NEW,OLD" (base64) first; afterwards OLD may be dropped."""
    with open_engine(data_dir, model_dir) as engine:
        count = engine.rotate_master_key()
    print(f"{count} data keys re-wrapped", file=sys.stderr)
