"""Errors a user can fix; front doors print them as one line and exit non-zero."""


class ConfigError(ValueError):
    """A configuration value that cannot work, named together with what is accepted."""


class NonFiniteError(RuntimeError):
    """A non-finite loss or parameter; training stops before it reaches a checkpoint."""


class DistributedError(RuntimeError):
    """Another process of a data-parallel run stopped or stopped answering; this one stops too."""
