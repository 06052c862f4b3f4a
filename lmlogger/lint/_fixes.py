"""The concrete change each finding asks for: the runtime's own wording (``lmlogger.records._verify.fix_for``).

``fix_for`` is pure (it reads the record layer only), so the static check calls it with the facts it
sees in the source. The runtime knows a key and an attribute path as strings; the source may name them
with any expression (``f"{stage}_f1"``, ``self.metrics["f1"]``, ``getattr(self, f"{stage}_f1")``), so
placeholders go in and the source text replaces them in the runtime's sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lmlogger.lint._hooks import phase_of
from lmlogger.records._derivation import CallSite
from lmlogger.records._functional import functional_attribute
from lmlogger.records._records import METRIC_COMPUTE, METRIC_FORWARD, METRIC_FUNCTIONAL, METRIC_OBJECT, TENSOR
from lmlogger.records._verify import Facts, FixPlan, fix_for, fix_plan

_KEY = "\x00key\x00"
_ATTR = "\x00attr\x00"


@dataclass(frozen=True)
class Fix:
    """A fix as printed (``text``, the runtime's words) and as edits (``plan``; ``None``: not mechanical)."""

    text: str
    plan: FixPlan | None = None


def _runtime(code: str, name: str, attr: str, **facts: object) -> Fix:
    """``fix_for`` for ``code``, with ``name`` (a key as source: ``"val_f1"``) and ``attr`` (``self.x``)."""
    base: dict[str, object] = dict(
        name=_KEY,
        kind=METRIC_COMPUTE,
        hook="training_step",
        step_hook=True,
        on_step=False,
        on_epoch=True,
        attribute=_ATTR,
        phase="train",
    )
    base.update(facts)
    made = Facts(**base)  # type: ignore[arg-type]
    literal = name.startswith('"') and name.endswith('"')
    as_repr = repr(name[1:-1].replace('\\"', '"').replace("\\\\", "\\")) if literal else name

    def words(text: str) -> str:
        text = text.replace(f'"{_KEY}"', name).replace(repr(_KEY), as_repr).replace(_KEY, name.strip('"'))
        return text.replace(f"self.{_ATTR}", attr).replace(_ATTR, attr)

    plan = fix_plan(made, [code])
    if plan is not None:
        plan = replace(
            plan,
            replace=tuple(map(words, plan.replace)) if plan.replace is not None else None,
            after=tuple(map(words, plan.after)),
            epoch_statements=tuple(map(words, plan.epoch_statements)),
            remove_reset=(words(plan.remove_reset[0]), plan.remove_reset[1]) if plan.remove_reset else None,
        )
    return Fix(words(fix_for(made, [code]) or ""), plan)


def log_object(
    name: str,
    attr: str,
    on_step: bool = False,
    *,
    as_dict: bool = False,
    remove: str | None = None,
    call: CallSite | None = None,
) -> Fix:
    """``running-value-averaged`` / ``batch-values-averaged``: log the metric object itself.

    ``on_step``: the key was logged per step too (a forward() value). ``remove``: the hook in which the
    module resets this training metric. ``as_dict``: a ``log_dict`` of a collection's results.
    """
    code = "batch-values-averaged" if on_step else "running-value-averaged"
    kind = METRIC_FORWARD if on_step else METRIC_COMPUTE
    fix = _runtime(code, name, attr, kind=kind, on_step=on_step, reset_hooks=(remove,) if remove else (), call=call)
    if as_dict and call is None:  # the runtime names one key; a collection is logged whole
        fix = Fix(fix.text.replace(f"self.log({name}, {attr},", f"self.log_dict({attr},"))
    return fix


def element_at_epoch_end(name: str, attr: str, index: str, phase: str, call: CallSite | None = None) -> Fix:
    """An element of a result (``compute()[0]``): logged once per epoch from the epoch-end hook."""
    fix = _runtime("running-value-averaged", name, attr, phase=phase, index=("\x00index\x00",), call=call)
    here = "['\\x00index\\x00']"
    plan = fix.plan
    if plan is not None:
        plan = replace(plan, epoch_statements=tuple(t.replace(here, index) for t in plan.epoch_statements))
    return Fix(fix.text.replace(here, index), plan)


def derived(name: str, expression: str, phase: str, call: CallSite | None = None) -> Fix:
    """``derived-value``: the same expression, from ``compute()``, once per epoch."""
    return _runtime(
        "derived-value",
        name,
        "",
        kind=TENSOR,
        phase=phase,
        derived_source=expression,
        derived_epoch_expression=expression,
        call=call,
    )


def reset_after_logging(name: str, attr: str, phase: str) -> Fix:
    """``state-carried-over`` of a ``compute()`` result logged at epoch end."""
    return _runtime("state-carried-over", name, attr, phase=phase, step_hook=False, carried=1)


def one_instance_per_phase(attr: str) -> Fix:
    """``shared-metric`` between phases."""
    return _runtime("shared-metric", '"?"', attr, shared=True, attribute=attr.removeprefix("self."))


def one_instance_per_dataloader(name: str, attr: str) -> Fix:
    """``shared-metric`` between the dataloaders of one phase."""
    return _runtime("shared-metric", f'"{name}"', attr, shared=True, shared_dataloaders=True)


def functional(name: str, function: str, cls: str, data: str, on_step: bool, hook: str) -> str:
    """``batch-values-averaged`` of a functional metric (``function``): keep ``cls`` on the module, update it
    where the function was called, log the object. The runtime's fix, with the key as written in the source."""
    phase = phase_of(hook)
    literal = name.startswith('"') and name.endswith('"')
    key = name[1:-1].replace('\\"', '"').replace("\\\\", "\\") if literal else function
    facts = Facts(
        name=_KEY,
        kind=METRIC_FUNCTIONAL,
        hook=hook,
        step_hook=True,
        on_step=on_step,
        on_epoch=True,
        attribute=functional_attribute(key, phase),
        phase=phase,
        functional=cls,
        functional_data=data,
    )
    text = fix_for(facts, ["batch-values-averaged"]) or ""
    return text.replace(f'"{_KEY}"', name)


def call_forward(name: str, attr: str) -> Fix:
    """``stale-step-value``."""
    return _runtime("stale-step-value", name, attr, kind=METRIC_OBJECT, on_step=True, stale=True)


def update_it(name: str, attr: str) -> Fix:
    """``never-updated``: the update a half-applied fix left out."""
    return _runtime("never-updated", name, attr, kind=METRIC_OBJECT)
