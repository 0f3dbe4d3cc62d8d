"""The web console at /console: pages rendered by the server, with a little JavaScript, over
the same services and project isolation as the API. Its assets ship in the package."""
