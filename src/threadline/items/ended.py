"""Items of an ended response, as this process keeps them in memory (store/chain_cache.py).

An ended response's items never change, and a deep chain hands the same few hundred of them
to every turn: what each turn derives from an item (its token estimate, its chat message, its
file parts) is worked out once and kept with the item. So nothing may change an EndedItem, or
anything in it: code that would, copies it first (as it must for any item it was given).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any


class EndedItem(dict):
    __slots__ = ("_derived",)  # what has been worked out from it, by key


def derived(item: dict, key: Hashable, compute: Callable[[dict], Any]) -> Any:
    """`compute(item)`: for an EndedItem, worked out the first time `key` is asked for and
    kept with it (so shared by every caller, and never to be changed either); for any other
    item, worked out afresh."""
    if type(item) is not EndedItem:
        return compute(item)
    try:
        return item._derived[key]
    except AttributeError:
        item._derived = {}
    except KeyError:
        pass
    value = item._derived[key] = compute(item)
    return value
