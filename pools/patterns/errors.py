"""The one error of patterns (parsing and generation both raise it)."""


class PatternError(ValueError):
    """A pattern, excluded character or excluded phrase that cannot be used.

    ``field`` names the input at fault: ``pattern``, ``excluded_characters`` or
    ``excluded_phrases``.
    """

    def __init__(self, message: str, field: str = "pattern"):
        super().__init__(message)
        self.field = field
