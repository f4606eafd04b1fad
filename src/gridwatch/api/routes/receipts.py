"""Receipts from the dispatch system: accepted, arrived, handled; idempotent per receipt id.

No If-Match: a receipt reports what happened, not a decision taken on a version the caller
read. A concurrent change to the case is met by applying the receipt again to what it left.
"""

from datetime import UTC, datetime
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from gridwatch.api.context import ApiContext
from gridwatch.api.deps import ContextDep, PrincipalDep, permitted
from gridwatch.api.problems import PROBLEM_JSON, database_unavailable, problem
from gridwatch.api.roles import Permission, allows
from gridwatch.cases.errors import CaseNotFoundError, InvalidRequestError, VersionMismatchError
from gridwatch.cases.receipts import (
    Applied,
    ReceiptConflictError,
    ReceiptRefusedError,
    ReceiptRequest,
    ReceiptResult,
    apply_receipt,
)
from gridwatch.cases.transitions import Actor
from gridwatch.dispatch.feed import DispatchFeed

router = APIRouter(prefix="/api/v1/cases", tags=["cases"])
# Each try reads the case afresh; more than a few lost races in a row means a hot loop
# somewhere else, and the caller may try later.
ATTEMPTS: Final = 5
REPLAYED_HEADER: Final = "Idempotent-Replayed"
_PROBLEM: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}


@router.post(
    "/{case_id}/receipts",
    status_code=201,
    **permitted(Permission.CASES_RECEIPT),
    response_model=ReceiptResult,
    responses={
        404: _PROBLEM,
        409: _PROBLEM
        | {"description": "The case's state refuses it, or the receipt id was used otherwise"},
        422: _PROBLEM,
    },
)
async def post_receipt(
    case_id: str,
    receipt: ReceiptRequest,
    request: Request,
    context: ContextDep,
    principal: PrincipalDep,
) -> Any:
    """The dispatch system reports on a case: `accepted`, `arrived` or `handled`.

    `accepted` accepts the case and `handled` feeds back (a `note` is required), as the
    dispatcher would; `arrived` records the unit on site and stops the deadline clock. The
    same `receipt_id` again changes nothing and gets the first answer (with
    `Idempotent-Replayed: true`).
    """
    actor = Actor(id=principal.key_id, name=principal.name)
    include_test = allows(principal.role, Permission.TEST_CASES_READ)
    for _ in range(ATTEMPTS):
        try:
            applied = await _apply(context, case_id, receipt, actor, include_test)
        except VersionMismatchError:
            continue  # another writer changed the case: apply the receipt to what it left
        except IntegrityError as err:
            if "case_receipts" not in str(err.orig):
                raise
            continue  # the same receipt, posted twice at once: the next try finds its answer
        except CaseNotFoundError as err:
            return problem(404, str(err))
        except ReceiptConflictError as err:
            errors = [{"field": "receipt_id", "reason": str(err)}]
            return problem(409, str(err), receipt_id=err.receipt_id, errors=errors)
        except ReceiptRefusedError as err:
            return problem(
                409,
                err.reason,
                state=err.state.value,
                receipt=err.receipt_type.value,
                accepted_in=[state.value for state in err.accepted_in],
            )
        except InvalidRequestError as err:
            errors = [{"field": field.value, "reason": why} for field, why in err.problems.items()]
            return problem(422, str(err), errors=errors)
        break
    else:
        return database_unavailable(f"case {case_id} kept changing; send the receipt again")
    response = JSONResponse(applied.result.model_dump(mode="json"), status_code=201)
    if applied.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    else:
        feed: DispatchFeed = request.app.state.dispatch_feed
        feed.notify()
        context.events_committed()
    return response


async def _apply(
    context: ApiContext,
    case_id: str,
    receipt: ReceiptRequest,
    actor: Actor,
    include_test: bool,
) -> Applied:
    async with context.sessions() as session, session.begin():
        return await apply_receipt(
            session=session,
            case_id=case_id,
            receipt=receipt,
            source=actor.id,
            actor=actor,
            now=datetime.now(UTC),
            include_test=include_test,
            policy=context.case_policy,
        )
