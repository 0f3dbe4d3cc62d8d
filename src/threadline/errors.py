"""One exception type for every error the API answers, in OpenAI's envelope."""

from __future__ import annotations


class APIError(Exception):
    """An error the client sees as {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def envelope(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 for input the API cannot accept."""
    return APIError(400, message, param=param, code=code)


def not_found(what: str, object_id: str, param: str | None = None) -> APIError:
    """A 404 for an id that is unknown or belongs to another project."""
    return APIError(404, f"{what} with id '{object_id}' not found.", param=param, code=None)
