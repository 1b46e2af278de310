"""One root exception and its families, classified by what an error means.

- transient: a dependency is unavailable for now (retry, pause the stream, never dead-letter);
- systemic: the whole batch fails the same way, a misconfiguration (stop the batch run with one
  clear line, pause the stream until fixed, never dead-letter);
- permanent: this record is wrong (dead-letter it, the rest of its chunk goes on).
"""

from __future__ import annotations

from pipeline.domain.model import Reason


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""


class TransientError(PipelineError):
    """A dependency is unavailable for now: retry, pause, never dead-letter."""


class SystemicError(PipelineError):
    """Every record fails the same way (wrong endpoint, auth, permissions): stop or pause."""


class PermanentError(PipelineError):
    """Retrying cannot help: the record (or request) itself is wrong."""


class CategoriserUnavailable(TransientError):
    """The ML API could not be reached or answered 429/5xx."""


class StoreUnavailable(TransientError):
    """The database could not be reached or the transaction was aborted by the server."""


class BrokerUnavailable(TransientError):
    """The Kafka broker could not be reached."""


class CategoriserMisconfigured(SystemicError):
    """The ML API answers, but not as the model: wrong path, auth, or it refuses everything."""


class StoreMisconfigured(SystemicError):
    """The database refuses every write: permission denied, read-only after a failover."""


class BrokerMisconfigured(SystemicError):
    """A topic is missing, access to it is denied, or it refuses the messages' size."""


class InvalidRecord(PermanentError):
    """A record failed validation; `reason` is a stable machine-readable code."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CategoriserRejected(PermanentError):
    """The ML API refused a request for its content (HTTP 4xx other than 429)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"ML API answered {status}: {detail}")
        self.status = status
        self.detail = detail


class CategoriserContractError(PermanentError):
    """The ML API answered, but not with one known category per id sent."""


class StoreRejected(PermanentError):
    """The database refused the rows for their content (a value it cannot hold)."""


class ConfigurationError(PipelineError):
    """The pipeline cannot start: missing file, database schema behind, bad settings."""


class FileChanged(ConfigurationError):
    """The file differs from what was planned (replaced, truncated, appended to): a window
    would mix two files, so nothing of it is processed."""


class RunFailed(PipelineError):
    """A run is recorded as failed: too many rows rejected, or chunks that never finished."""
