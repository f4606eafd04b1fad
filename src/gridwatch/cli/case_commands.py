"""Duty-officer commands: list and show cases, and move them through the loop."""

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from gridwatch.cases import routing_store, service, transitions
from gridwatch.cases.errors import CaseNotFoundError, InvalidRequestError, VersionMismatchError
from gridwatch.cases.lifecycle import Action, TransitionRefusedError
from gridwatch.cases.models import CaseRead, CaseStatus, CaseSummary
from gridwatch.cases.requests import TransitionRequest
from gridwatch.cli.app import ConfigOption, app, console, database, errors, load, run
from gridwatch.domain import Severity
from gridwatch.gateway.settings import SettingsError
from gridwatch.service.runtime import case_policy

cases_app = typer.Typer(help="List, show and act on cases.", no_args_is_help=True)
app.add_typer(cases_app, name="cases")


@cases_app.command("list")
def list_cases(
    status: Annotated[CaseStatus | None, typer.Option(help="Only this status.")] = None,
    severity: Annotated[Severity | None, typer.Option(help="Only this severity.")] = None,
    grid: Annotated[str | None, typer.Option(help="Only this grid unit.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only unclosed cases.")] = False,
    queue: Annotated[str, typer.Option(help="city, maintenance (device health) or all.")] = "city",
    include_test: Annotated[bool, typer.Option(help="Include commissioning test cases.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    config: ConfigOption = None,
) -> None:
    """List cases, newest first."""
    queues: dict[str, bool | None] = {"city": False, "maintenance": True, "all": None}
    if queue not in queues:
        raise typer.BadParameter("city, maintenance or all", param_hint="--queue")
    settings = load(config)
    case_filter = service.CaseFilter(
        status=status.value if status else None,
        severity=severity,
        grid=grid,
        open_only=open_only,
        include_test=include_test,
        maintenance=queues[queue],
    )

    async def fetch() -> tuple[list[CaseSummary], int]:
        async with database(settings) as sessions, sessions() as session:
            cases, total = await service.list_cases(
                session=session, case_filter=case_filter, limit=limit, offset=0
            )
            return [CaseSummary.model_validate(case) for case in cases], total

    cases, total = run(fetch())
    table = Table(title=f"{total} cases")
    # Ids and states are what the next command needs: never wrap or cut them.
    for column in ("id", "status", "severity"):
        table.add_column(column, no_wrap=True, min_width=len(column))
    for column in ("category", "grid", "unit", "opened", "v", "title"):
        table.add_column(column)
    for case in cases:
        table.add_row(
            case.id, case.status, case.severity, case.category, case.grid or "", case.unit or "",
            case.opened_at.isoformat(timespec="seconds"), str(case.version), case.title,
        )  # fmt: skip
    console.print(table)


@cases_app.command("show")
def show_case(case_id: str, config: ConfigOption = None) -> None:
    """Show one case with its history as JSON."""
    settings = load(config)

    async def fetch() -> CaseRead | None:
        async with database(settings) as sessions, sessions() as session:
            case = await service.get_case(session=session, case_id=case_id)
            return CaseRead.model_validate(case) if case is not None else None

    case = run(fetch())
    if case is None:
        errors.print(f"[bold red]error:[/] no case {case_id!r}")
        raise typer.Exit(1)
    console.print_json(case.model_dump_json())


@cases_app.command("act")
def act(
    case_id: str,
    action: Annotated[Action, typer.Argument(help="The action to take.")],
    note: Annotated[str, typer.Option(help="Why, or what was done.")] = "",
    unit: Annotated[str | None, typer.Option(help="Responsible unit (dispatch).")] = None,
    evidence: Annotated[
        list[str] | None, typer.Option(help="An evidence link; repeat for more.")
    ] = None,
    due_at: Annotated[
        datetime | None, typer.Option(help="Deadline (dispatch, postpone); ISO 8601 with offset.")
    ] = None,
    score: Annotated[int | None, typer.Option(help="Evaluation, 1 to 5.")] = None,
    override: Annotated[
        bool, typer.Option(help="Verify although the sensor still alarms (needs --note).")
    ] = False,
    deny: Annotated[bool, typer.Option(help="approve_postpone: deny it (needs --note).")] = False,
    version: Annotated[
        int | None, typer.Option(help="Act only if the case is at this version.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Take an action on a case, recorded as cli:<your user name>."""
    settings = load(config)
    # The same deadlines and routing as the running service: a dispatch from the CLI gets
    # the deadline an API dispatch would.
    try:
        policy = case_policy(settings)
    except SettingsError as err:
        errors.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(2) from err
    raw = {
        "action": action, "note": note, "unit": unit, "evidence": evidence or [],
        "due_at": due_at, "score": score, "override": override,
        "approved": False if deny else None,
    }  # fmt: skip
    with _refusals():
        request = TransitionRequest.model_validate(raw)
    user = getpass.getuser()
    actor = transitions.Actor(id=f"cli:{user}"[:64])

    async def take() -> CaseSummary:
        async with database(settings) as sessions, sessions() as session, session.begin():
            # A table stored through the API replaces the routing file's (a reopen routes).
            await routing_store.refresh(session=session, routing=policy.routing)
            current = version
            if current is None:
                # Without --version act on what is there now; the write is still conditional,
                # so a change made meanwhile by someone else makes this one fail, not vanish.
                found = await service.get_case(session=session, case_id=case_id)
                if found is None:
                    raise CaseNotFoundError(case_id)
                current = found.version
            case = await transitions.transition(
                session=session,
                case_id=case_id,
                versions=frozenset({current}),
                request=request,
                actor=actor,
                at=datetime.now(UTC),
                policy=policy,
            )
            return CaseSummary.model_validate(case)

    with _refusals():
        case = run(take())
    console.print(f"{case.id}: {action} -> {case.status} (version {case.version})")


@contextmanager
def _refusals() -> Iterator[None]:
    # Bad input exits 2, like every other command; a refusal by the loop exits 1.
    try:
        yield
    except ValidationError as err:
        for error in err.errors():
            where = ".".join(str(part) for part in error["loc"])
            errors.print(f"[bold red]error:[/] {where}: {error['msg']}")
        raise typer.Exit(2) from err
    except InvalidRequestError as err:
        errors.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(2) from err
    except TransitionRefusedError as err:
        errors.print(f"[bold red]refused:[/] {err}")
        raise typer.Exit(1) from err
    except (CaseNotFoundError, VersionMismatchError) as err:
        errors.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(1) from err
