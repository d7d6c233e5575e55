"""The error of an image source that cannot be read at all, shared by the sources' modules."""


class DataSourceError(ValueError):
    """The configured source cannot be read at all (missing path, wrong column, ...)."""
