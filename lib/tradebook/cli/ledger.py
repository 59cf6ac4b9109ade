"""``tradebook ledger backup|restore|check`` (OPS-3, OPS-7): the ledger file's safety net."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tradebook.cli.common import OverrideOpt, ParamsOpt, context

ledger_app = typer.Typer(no_args_is_help=True, help="Ledger backup, restore and checks.")


@ledger_app.command("backup")
def backup(dest: Optional[Path] = typer.Option(None, "--dest", help="folder (default runs/backups)"),
           params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-3: consistent copy to runs/backups/ledger-<UTC stamp>.duckdb; prunes by backup_retention_days."""
    from tradebook.clock import operator_now
    from tradebook.ledger.backup import backup as write_backup

    ctx = context(params_file, param)
    # The daemon's clock (simulated in sim mode): a wall-clock stamp would sort after every later
    # daemon backup (restore would pick older data) and its retention cut would delete them.
    path = write_backup(ctx.params.ledger_path(ctx.root), dest, operator_now(ctx.params, ctx.root),
                        retention_days=ctx.params.backup_retention_days)
    typer.echo(f"backup written: {path}")


@ledger_app.command("restore")
def restore(path: Optional[Path] = typer.Argument(None, help="backup file (default: the newest)"),
            force: bool = typer.Option(False, "--force", help="replace a healthy ledger too"),
            params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-3: put a backup in place; the replaced ledger is kept as ledger.duckdb.corrupt-<stamp>."""
    from tradebook.ledger.backup import restore as restore_backup
    from tradebook.phases.flatten_adopt import restore_notes

    ctx = context(params_file, param)
    result = restore_backup(path, ctx.params.ledger_path(ctx.root), force=force)
    typer.echo(f"restored {result.ledger} from {result.restored_from}")
    for aside in result.set_aside:
        typer.echo(f"kept the previous file as {aside}")
    typer.echo("rows: " + ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items()) if v))
    for line in restore_notes(ctx.runs_dir, ctx.ledger):   # CTL-5/OPS-7: what the next reconcile adopts
        typer.echo(line)


@ledger_app.command("check")
def check(params_file: Optional[Path] = ParamsOpt, param: Optional[list[str]] = OverrideOpt) -> None:
    """OPS-3/OPS-7: check the file's blocks and read every table in full; a damaged file names the backup."""
    from tradebook.ledger.backup import check as check_file

    ctx = context(params_file, param)
    result = check_file(ctx.params.ledger_path(ctx.root))
    typer.echo(f"ledger {result.ledger}: ok, schema v{result.schema_version}, {result.blocks_verified} blocks "
               "in use pass their checksums, every table read in full")
    typer.echo("rows: " + ", ".join(f"{k}={v}" for k, v in sorted(result.counts.items())))
    typer.echo(f"newest backup: {result.newest_backup or 'none (run `tradebook ledger backup`)'}")
