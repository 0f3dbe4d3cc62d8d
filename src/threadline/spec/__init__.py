"""The API's own shapes, in one place below the engine: the request body, the Response object
and how a client sees it, item types and their id prefixes, error codes, and the streaming
events (`stream`: the one builder of a response's events, from the backends' model events).

Nothing here knows HTTP or storage; the api, the engine and the store build what they send
from it. Import the modules themselves (`threadline.spec.response`, ...): this
package imports nothing, so `items` can use `spec.items` without a cycle.
"""
