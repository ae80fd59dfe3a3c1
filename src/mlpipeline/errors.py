"""Domain exceptions, one hierarchy for the whole project.

Every entry point (CLI, components, HTTP) catches ``MLPipelineError`` and reports ``str(err)``;
HTTP status codes are mapped in one place (``mlpipeline.serving.errors``) from these classes.
Raise with ``from e`` so the cause is never lost.
"""

from __future__ import annotations


class MLPipelineError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(MLPipelineError):
    """A config file or section is malformed; the message names the field."""


class DataError(MLPipelineError):
    """Input data cannot be used: unreadable, empty, wrong columns or types."""


class UnknownDatasetError(DataError):
    """A shipped dataset name that does not exist."""


class SchemaValidationError(DataError):
    """Data broke a hard validation rule; the message names column(s) and example rows."""


class ArtifactError(MLPipelineError):
    """An artifact (model dir, transformer, registry) is missing or malformed."""


class IntegrityError(ArtifactError):
    """An artifact's content does not match its recorded sha256: tampered or incomplete."""


class RegistryError(ArtifactError):
    """The model registry is unreadable or an operation on it is invalid."""


class InvalidInputError(MLPipelineError):
    """A prediction request does not match the model signature (HTTP 400)."""


class PayloadTooLargeError(InvalidInputError):
    """A prediction request is over the configured batch or byte limit (HTTP 413)."""


class ServerBusyError(MLPipelineError):
    """A server's bounded waiting queue is full; the client should retry later (HTTP 429)."""


class GenerationError(MLPipelineError):
    """Text generation failed inside the model engine (HTTP 500, or an SSE error event mid-stream)."""


class TrainingError(MLPipelineError):
    """Training could not proceed (e.g. a single-class target)."""


class DeploymentError(MLPipelineError):
    """Rendering or applying a deployment failed."""


class SubmitError(MLPipelineError):
    """Submitting to a Kubeflow Pipelines backend failed (unreachable host, auth, ...)."""
