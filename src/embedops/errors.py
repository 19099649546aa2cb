"""The embedops exception tree.

Every error the library raises on purpose is an ``EmbedopsError``. Each class carries the
process exit code the CLI uses for it, so scripts can tell failures apart::

    EmbedopsError (1)
    ├── ConfigError (9)                  bad setting or argument value
    ├── InputError (2)
    │   ├── SourceNotFound (3)           the input file does not exist
    │   ├── InvalidFormat (4)            unreadable file, or a line/row that does not parse
    │   ├── MissingField (5)             the id or text field is not in the input
    │   └── TooManyBadRows (13)          more rows quarantined than --max-quarantined allows
    ├── ResourceError
    │   └── MemoryPressure (6)           MemoryError even after halving the batch
    ├── ModelError
    │   ├── ModelLoadError (7)           package missing, weights corrupt, incomplete or changed
    │   └── QualityGateFailed (12)       not evaluated, or misses its quality gate (promote)
    └── StoreError (8)
        ├── CollectionNotFound (10)
        └── ItemNotFound (11)

Messages are one line, say what went wrong and where (file, line or row, field), and what to do.
"""

from __future__ import annotations


class EmbedopsError(Exception):
    """Base class of every error embedops raises on purpose."""

    exit_code = 1


class ConfigError(EmbedopsError):
    """A setting or argument has a value embedops cannot use."""

    exit_code = 9


class InputError(EmbedopsError):
    """The input records cannot be read as asked."""

    exit_code = 2


class SourceNotFound(InputError):
    """The input file does not exist."""

    exit_code = 3


class InvalidFormat(InputError):
    """The input file is not valid for its format (names the line or row)."""

    exit_code = 4


class MissingField(InputError):
    """An id, text or metadata field named by the user is not in the input."""

    exit_code = 5


class TooManyBadRows(InputError):
    """More rows were quarantined than the run's bad-row budget allows."""

    exit_code = 13


class ResourceError(EmbedopsError):
    """The machine ran out of a resource."""

    exit_code = 6


class MemoryPressure(ResourceError):
    """Embedding failed with MemoryError even at the smallest batch."""

    exit_code = 6


class ModelError(EmbedopsError):
    """A model problem."""

    exit_code = 7


class ModelLoadError(ModelError):
    """The model could not be loaded (package missing, weights corrupt or incomplete)."""

    exit_code = 7


class StoreError(EmbedopsError):
    """The vector store cannot serve the request."""

    exit_code = 8


class CollectionNotFound(StoreError):
    """No collection of that name exists for the active model version."""

    exit_code = 10


class ItemNotFound(StoreError):
    """An item id is not in the collection."""

    exit_code = 11


class QualityGateFailed(ModelError):
    """A model version was not evaluated, or its scores miss its quality gate."""

    exit_code = 12


def one_line(exc: BaseException) -> str:
    """An error's message on one line (LanceDB's and pyarrow's span several)."""
    return " ".join(str(exc).split())
