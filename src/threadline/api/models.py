"""The Models API: the models this server offers, in OpenAI's shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from threadline.api.auth import project
from threadline.api.json import JSON, JSONRoute
from threadline.api.openapi import Model, ModelList, answers
from threadline.errors import APIError

router = APIRouter(prefix="/v1/models", tags=["Models"], route_class=JSONRoute)

Project = Annotated[str, Depends(project)]


def model_object(model_id: str, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "threadline"}


@router.get("", summary="List models", responses=answers(ModelList))
async def list_models(project: Project, request: Request) -> JSON:
    state = request.app.state
    return JSON({"object": "list", "data": [model_object(model_id, state.started_at) for model_id in state.models.ids()]})


@router.get("/{model_id:path}", summary="Retrieve a model", responses=answers(Model, 404))
async def retrieve_model(model_id: str, project: Project, request: Request) -> JSON:
    state = request.app.state
    if model_id not in state.models.ids():
        raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
    return JSON(model_object(model_id, state.started_at))
