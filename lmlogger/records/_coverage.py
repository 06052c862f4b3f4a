"""Coverage: keys the wrapped logger received that lmlogger did not see made by ``self.log``.

Every key the wrapped logger receives appears in the audit (DESIGN.md). A key that did not come from a
``self.log`` call lmlogger observed has no provenance lmlogger can vouch for, so it is ``unverified`` with one
of two provenance kinds, and the reason says which:

* ``direct``: the key reached ``log_metrics`` without ``self.log`` (``self.logger.log_metrics({...})`` in
  the module, a callback such as ``LearningRateMonitor`` writing to the logger itself): lmlogger cannot know
  how the value was made.
* ``unseen``: Lightning handed the key to the logger as the value of a ``self.log`` call, but lmlogger did
  not see that call (a setup it cannot see into). A run whose keys are all ``unseen`` is *blind*: nothing in
  it was verified, and the runtime, the audit and ``assert_verified`` say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Provenance kind of a key that reached the logger without ``self.log``.
DIRECT = "direct"
#: Provenance kind of a key Lightning logged from a ``self.log`` call that lmlogger did not see.
UNSEEN = "unseen"
#: Hook recorded for a ``direct`` key: the call it came through.
DIRECT_HOOK = "logger.log_metrics"


def direct_reason(key: str, caller: str | None) -> str:
    where = f" from `{caller}`" if caller else ""
    return (
        f"`{key}` reached the logger through `log_metrics`{where}, not through `self.log`: lmlogger cannot know "
        "how it was made. Log it with `self.log` (or `pl_module.log` in a callback) to have it verified"
    )


def unseen_reason(key: str) -> str:
    return f"`{key}` came from a `self.log` call that lmlogger did not see, so it has no provenance and no reference"


def blind_line(keys: Iterable[Any]) -> str | None:
    """One line when lmlogger saw none of the ``self.log`` calls whose keys the logger received, else ``None``.

    ``keys`` are objects with ``key`` and ``provenance`` (audit key reports)."""
    keys = list(keys)
    unseen = [k.key for k in keys if k.provenance == UNSEEN]
    if not unseen or any(k.provenance not in (UNSEEN, DIRECT) for k in keys):
        return None
    shown = ", ".join(unseen[:5]) + (f" and {len(unseen) - 5} more" if len(unseen) > 5 else "")
    return (
        f"lmlogger saw none of the self.log calls of this run: the logger received {len(unseen)} key(s) "
        f"({shown}) and none of them was verified"
    )
