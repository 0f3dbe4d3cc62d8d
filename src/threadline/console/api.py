"""The console's JSON, under /console/api: what the pages' scripts read and change, held to
the viewer's project as the API is. Listings the public API lacks live here, as Threadline's own."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from threadline.api.json import JSON, JSONRoute
from threadline.console.viewer import Viewer, api_viewer

router = APIRouter(prefix="/console/api", include_in_schema=False, route_class=JSONRoute)
ApiViewer = Annotated[Viewer, Depends(api_viewer)]


@router.get("/session")
async def session(viewer: ApiViewer) -> JSON:
    return JSON({"project": viewer.project, "admin": viewer.admin, "open": viewer.open})
