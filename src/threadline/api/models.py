"""The Models API over HTTP: the models this server offers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from threadline.api.auth import project
from threadline.api.json import JSON, JSONRoute
from threadline.api.openapi import Model, ModelList, answers
from threadline.services.models import ModelsService

router = APIRouter(prefix="/v1/models", tags=["Models"], route_class=JSONRoute)


def service(request: Request) -> ModelsService:
    return request.app.state.models


Models = Annotated[ModelsService, Depends(service)]
Project = Annotated[str, Depends(project)]


@router.get("", summary="List models", responses=answers(ModelList))
async def list_models(project: Project, models: Models) -> JSON:
    return JSON({"object": "list", "data": models.list()})


@router.get("/{model_id:path}", summary="Retrieve a model", responses=answers(Model, 404))
async def retrieve_model(model_id: str, project: Project, models: Models) -> JSON:
    return JSON(models.retrieve(model_id))
