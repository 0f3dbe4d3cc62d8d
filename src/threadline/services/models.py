"""The Models API's work: the models this server offers, in OpenAI's shape."""

from __future__ import annotations

from threadline.backends.registry import Models
from threadline.errors import APIError


class ModelsService:
    def __init__(self, models: Models, started_at: int) -> None:
        self.models = models
        self.started_at = started_at  # every model is offered from the server's start

    def list(self) -> list[dict]:
        return [self._model(model_id) for model_id in self.models.ids()]

    def retrieve(self, model_id: str) -> dict:
        if model_id not in self.models.ids():
            raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
        return self._model(model_id)

    def _model(self, model_id: str) -> dict:
        return {"id": model_id, "object": "model", "created": self.started_at, "owned_by": "threadline"}
