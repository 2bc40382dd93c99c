"""HTTP transport for roles: who is staff, and an admin setting a role at run time."""

from __future__ import annotations

from aiohttp import web

from rero import role_schemas as schemas
from rero.keys import IDENTITY
from rero.request_info import parse, require_bearer, srn


async def set_role(request: web.Request) -> web.Response:
    token = require_bearer(request)
    student = srn(request)
    role = (await parse(request, schemas.ROLE))["role"]
    await request.app[IDENTITY].set_role(token, student, role)
    return web.json_response({"srn": student, "role": role, "source": "runtime"})


async def list_roles(request: web.Request) -> web.Response:
    staff = await request.app[IDENTITY].staff(require_bearer(request))
    body = {"roles": [{"srn": srn, "role": role, "source": source} for srn, role, source in staff]}
    return web.json_response(body)
