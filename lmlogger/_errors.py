"""lmlogger's exceptions."""


class MismatchError(AssertionError):
    """Raised at epoch end by ``VerifiedLogger(on_mismatch="raise")`` once the records are written."""
