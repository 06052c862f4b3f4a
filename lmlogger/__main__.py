from lmlogger.cli import _entry

_entry()
