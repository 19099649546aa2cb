"""The embedding service: an OpenAI-compatible HTTP API over ``EmbeddingProcessor``.

``create_app(settings)`` builds the FastAPI app; ``embedops serve`` runs it with uvicorn.
"""

from embedops.service.app import create_app

__all__ = ["create_app"]
