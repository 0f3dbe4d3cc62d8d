"""Server-side tools: what the server runs between the model's turns (MCP servers, web search)."""
