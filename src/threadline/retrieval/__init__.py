"""Retrieval: files read into text, chunked, embedded and searched."""
