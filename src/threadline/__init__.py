"""Threadline: a self-hosted server for OpenAI's Responses and Conversations APIs."""

__version__ = "0.1.0"
