"""Conversation and response input items: validation, error wording, and the stored shape."""

from threadline.items.models import InputItem
from threadline.items.normalize import is_item_reference, normalize_item
from threadline.items.validation import describe_errors
from threadline.spec.items import ITEM_ID_PREFIXES, new_item_id

__all__ = [
    "ITEM_ID_PREFIXES",
    "InputItem",
    "describe_errors",
    "is_item_reference",
    "new_item_id",
    "normalize_item",
]
