"""The codes a failed Response's `error` may carry: `ResponseErrorCode` in OpenAI's description."""

from __future__ import annotations

RESPONSE_ERROR_CODES = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "data_residency_mismatch",
        "bio_policy",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)


def response_error(code: str, message: str) -> dict:
    """A Response's `error`: a code the spec does not list is reported as server_error."""
    return {"code": code if code in RESPONSE_ERROR_CODES else "server_error", "message": message}
