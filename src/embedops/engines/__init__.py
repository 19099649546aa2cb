"""Engines: where the stages of a run execute.

- ``local`` (the default): ``pipeline.Run`` in this process (threads for reading, token
  counting and inference).
- ``ray``: ``engines.ray.RayRun``, the same stages with embedding on Ray Data (an actor pool,
  one model replica per actor), on a local Ray or the cluster at ``RAY_ADDRESS``. Needs the
  ``ray`` extra (``pip install 'embedops[ray]'``); it is imported only when chosen.
"""

from __future__ import annotations

from embedops.errors import ConfigError

ENGINES = ("local", "ray")


def check_engine(name: str) -> str:
    """Return ``name`` if it names an engine, else raise ``ConfigError`` listing them."""
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; known engines: {', '.join(ENGINES)}")
    return name


__all__ = ["ENGINES", "check_engine"]
