"""The rules: each logging call, metric update and reset of a LightningModule, seen from every hook that
reaches it (directly or through the module's own helper methods), judged with Lightning's defaults."""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterator
from dataclasses import dataclass, replace

from lmlogger.lint import _fixes
from lmlogger.lint._catalog import CARRY_BY_DESIGN
from lmlogger.lint._events import UNKNOWN, LogCall, MethodEvents, Use, Walker
from lmlogger.lint._hooks import DEFAULTS, is_step_hook, phase_of
from lmlogger.lint._model import message
from lmlogger.lint._project import ClassInfo, Project, SourceFile
from lmlogger.lint._values import (
    COMPUTE,
    FORWARD,
    FUNCTIONAL,
    OBJECT,
    ClassTable,
    GroupRef,
    MetricRef,
    Val,
    is_self,
    metrics_of,
)
from lmlogger.records._derivation import CallSite, _EpochRewriter, site_of  # pure (ast only): the runtime's own
from lmlogger.records._verify import FixPlan


@dataclass(frozen=True)
class Raw:
    """A finding before suppressions and selection: the source file, the node and the code."""

    source: SourceFile
    node: ast.AST
    code: str
    message: str
    fix: str | None
    plan: FixPlan | None = None  # the fix as edits, where it is mechanical (``lmlogger lint --fix``)
    why_not: str | None = None  # why a fix is not applied mechanically here


class ModuleCheck:
    """All rules over one LightningModule (with its bases and mixins)."""

    def __init__(self, info: ClassInfo, project: Project) -> None:
        self.table = ClassTable.build(info, project)
        self.events: dict[str, MethodEvents] = {}
        self.sources: dict[str, SourceFile] = {}
        for name, (func, source) in self.table.methods.items():
            self.events[name] = Walker(self.table, source).run(func)
            self.sources[name] = source

    def reach(self, hook: str) -> list[str]:
        """``hook`` and every method of the class it calls, transitively."""
        seen = [hook]
        for name in seen:
            seen.extend(c for c in sorted(self.events[name].calls) if c not in seen and c in self.events)
        return seen

    def run(self) -> Iterator[Raw]:
        hooks = [name for name in self.events if name in DEFAULTS]
        reached = {hook: self.reach(hook) for hook in hooks}
        resets = self._reset_attrs()
        phases: dict[int, set[str]] = {}  # the phases whose hooks reach each logging call
        for hook in hooks:
            for method in reached[hook]:
                for log in self.events[method].logs:
                    if log.phases is None or phase_of(hook) in log.phases:
                        phases.setdefault(id(log.node), set()).add(phase_of(hook))
        for hook in hooks:
            for method in reached[hook]:
                for log in self.events[method].logs:
                    if log.phases is None or phase_of(hook) in log.phases:  # a stage branch of another phase
                        for raw in self._judge_log(hook, method, log, reached[hook], resets):
                            if raw.plan is not None and self._serves_phases(log, phases):
                                why = "one call serves several phases with one metric instance"
                                raw = replace(raw, plan=None, why_not=why)
                            dict_literal = log.node.func.attr == "log_dict" and log.as_dict is None  # type: ignore[attr-defined]
                            if dict_literal and raw.why_not is None and raw.code in _MOVED:
                                why = "the log_dict call logs other keys too: edit its entry by hand"
                                raw = replace(raw, plan=None, why_not=why)
                            yield raw
        yield from self._shared(hooks, reached)
        yield from self._never_updated(hooks, reached)

    @staticmethod
    def _serves_phases(log: LogCall, phases: dict[int, set[str]]) -> bool:
        """One call reached from hooks of several phases with one metric instance: a fix made for one phase
        (its epoch-end hook, its reset, the object logged from a state both phases update) is not sure."""
        return len(phases[id(log.node)]) > 1 and any(val.definite for _, val, _ in log.items)

    # -- the rules ---------------------------------------------------------------------------------
    def _judge_log(
        self, hook: str, method: str, log: LogCall, reach: list[str], resets: set[str] | None
    ) -> Iterator[Raw]:
        default_step, default_epoch = DEFAULTS[hook]
        on_step = default_step if log.on_step is None else log.on_step
        on_epoch = default_epoch if log.on_epoch is None else log.on_epoch
        step = is_step_hook(hook)
        source = self.sources[method]
        for key, val, expr in log.items:
            attr = val.text
            name = attr if log.as_dict is not None else key
            if val.kind == FUNCTIONAL:
                # a functional metric's batch value, averaged over batches: right only for a mean of samples
                if step and on_epoch is True and val.functional and not val.derived and log.as_dict is None:
                    code = "batch-values-averaged"
                    fix = _fixes.functional(name, val.text, val.functional, val.functional_data, on_step is True, hook)
                    why = "the fix adds a Metric attribute in __init__"
                    yield Raw(source, log.node, code, message(code, _subject(name)), fix, why_not=why)
                continue
            call = self._call_site(log, key, source)
            if val.kind in (COMPUTE, FORWARD) and step and on_epoch is True:
                metrics = metrics_of(val.targets)
                exact = log.reduce_mean and not any(m.exact is False for m in metrics)
                if val.derived and val.kind == FORWARD and exact:
                    continue  # a multiple of a mean of samples (e.g. loss * weight) is still exact
                remove = self._early_resets(val, phase_of(hook))
                if val.derived:
                    code = "derived-value"
                    fix = _fixes.derived(name, self._epoch_expression(expr, attr), phase_of(hook), call)
                elif val.index is not None:
                    code = "running-value-averaged" if val.kind == COMPUTE else "batch-values-averaged"
                    if code == "batch-values-averaged" and exact:
                        continue
                    fix = _fixes.element_at_epoch_end(name, attr, val.index, phase_of(hook), call)
                elif val.kind == COMPUTE:
                    code = "running-value-averaged"
                    as_dict = log.as_dict is not None
                    fix = _fixes.log_object(name, attr, False, as_dict=as_dict, remove=remove, call=call)
                else:
                    if exact:
                        continue  # a mean of samples (micro accuracy, MAE): the mean of batch values is exact
                    code = "batch-values-averaged"
                    as_dict = log.as_dict is not None
                    fix = _fixes.log_object(name, attr, on_step is True, as_dict=as_dict, remove=remove, call=call)
                yield Raw(source, log.node, code, message(code, _subject(name)), fix.text, fix.plan)
            elif val.kind == COMPUTE and not step and not val.derived and resets is not None:
                carried = [m for m in metrics_of(val.targets) if m.attr not in resets and m.cls not in CARRY_BY_DESIGN]
                if carried and len(carried) == len(metrics_of(val.targets)):
                    code = "state-carried-over"
                    fix = _fixes.reset_after_logging(_repr_key(name), attr, phase_of(hook))
                    yield Raw(source, log.node, code, message(code, _subject(name)), fix.text, fix.plan)
            elif val.kind == OBJECT and step and on_step is True and self._stale(val, reach):
                code = "stale-step-value"
                yield Raw(source, log.node, code, message(code, _subject(name)), _fixes.call_forward(name, attr).text)

    def _call_site(self, log: LogCall, key: str, source: SourceFile) -> CallSite | None:
        """The runtime's :class:`CallSite` of this call: the updates its value makes, as written."""
        literal = key[1:-1] if key.startswith('"') and key.endswith('"') else None
        if log.node.func.attr == "log_dict" and log.as_dict is None and literal is None:  # type: ignore[attr-defined]
            return None
        return site_of(log.node, literal, source.text, set(self.table.attrs))

    def _epoch_expression(self, expr: ast.expr | None, attr: str) -> str:
        """The logged expression computed once per epoch: metric calls become ``compute()`` (as the runtime)."""
        if expr is None:
            return f"<an expression of {attr}.compute()>"
        rewritten = _EpochRewriter(set(self.table.attrs)).visit(copy.deepcopy(expr))
        return ast.unparse(rewritten)

    def _early_resets(self, val: Val, phase: str) -> str | None:
        """``on_train_epoch_end`` when the module resets this training metric there (the runtime's advice)."""
        if phase != "train" or "on_train_epoch_end" not in self.events:
            return None
        mine = set(_attrs(val))
        for method in self.reach("on_train_epoch_end"):
            if any(u.kind == "reset" and u.val and mine & set(_attrs(u.val)) for u in self.events[method].uses):
                return "on_train_epoch_end"
        return None

    def _stale(self, val: Val, reach: list[str]) -> bool:
        """Updated with ``update()`` and never called (``forward()``) in the hook that logs it on_step."""
        mine = set(_attrs(val))
        kinds = {u.kind for method in reach for u in self.events[method].uses if u.val and mine & set(_attrs(u.val))}
        return "update" in kinds and "forward" not in kinds

    def _key_of(self, attr: str) -> str:
        """The key a metric object is logged under (for a fix), or ``<key>``."""
        for events in self.events.values():
            for log in events.logs:
                for key, val, _ in log.items:
                    if val.kind == OBJECT and attr in _attrs(val) and key:
                        return key.strip('"')
        return "<key>"

    def _consumed(self) -> set[str]:
        return _attrs_consumed(self.events)

    def _reset_attrs(self) -> set[str] | None:
        """Metric attributes something resets (a ``reset()`` call, or Lightning after logging the object);
        ``None`` when a ``reset()`` on something unresolved might reset any of them."""
        resets: set[str] = set()
        for events in self.events.values():
            if events.unresolved_reset:
                return None
            for use in events.uses:
                if use.kind == "reset" and use.val is not None:
                    resets.update(_attrs(use.val))
            for log in events.logs:
                for _, val, _ in log.items:
                    if val.kind == OBJECT:
                        resets.update(_attrs(val))
        return resets

    def _shared(self, hooks: list[str], reached: dict[str, list[str]]) -> Iterator[Raw]:
        """One metric updated in train and validation hooks, or by several dataloaders of one hook."""
        consumed = self._consumed()
        first: dict[str, dict[str, tuple[str, Use]]] = {}
        for hook in hooks:
            if not is_step_hook(hook):
                continue
            phase = phase_of(hook)
            multi = hook in ("validation_step", "test_step") and _requires_dataloader_idx(self.table.methods[hook][0])
            for method in reached[hook]:
                for use in self.events[method].uses:
                    if use.kind not in ("update", "forward") or use.val is None or not use.val.definite:
                        continue
                    if use.phases is not None and phase not in use.phases:
                        continue  # under `if stage == "train":` in a helper validation_step calls too
                    for attr in _attrs(use.val):
                        if attr not in consumed:
                            continue  # state never read (a metric used as a loss function): sharing it is harmless
                        first.setdefault(attr, {}).setdefault(phase, (method, use))
                        if multi and not use.per_dataloader:
                            code = "shared-metric"
                            yield Raw(
                                self.sources[method],
                                use.node,
                                code,
                                message(code, f"self.{attr}") + f" ({hook} takes several dataloaders)",
                                _fixes.one_instance_per_dataloader(self._key_of(attr), f"self.{attr}").text,
                            )
        for attr, phases in first.items():
            if "train" in phases and "val" in phases:
                method, use = phases["val"]
                code = "shared-metric"
                yield Raw(
                    self.sources[method],
                    use.node,
                    code,
                    message(code, f"self.{attr}"),
                    _fixes.one_instance_per_phase(f"self.{attr}").text,
                )

    def _never_updated(self, hooks: list[str], reached: dict[str, list[str]]) -> Iterator[Raw]:
        """A metric object logged, and nothing in the project ever updates it (a half-applied fix)."""
        updated = {a for ev in self.events.values() for u in ev.uses if u.val and u.kind in ("update", "forward")
                   for a in _attrs(u.val)}  # fmt: skip
        seen: set[int] = set()
        for hook in hooks:
            for method in reached[hook]:
                for log in self.events[method].logs:
                    for key, val, _ in log.items:
                        if val.kind != OBJECT or not val.definite or id(log.node) in seen:
                            continue
                        roots = {a.split("[", 1)[0].split(".", 1)[0] for a in _attrs(val)}
                        if set(_attrs(val)) & updated or not all(self._only_logged(r) for r in roots):
                            continue
                        seen.add(id(log.node))
                        code = "never-updated"
                        name = val.text if log.as_dict is not None else key
                        fix = _fixes.update_it(name if name.startswith('"') else '"<key>"', val.text)
                        yield Raw(self.sources[method], log.node, code, message(code, val.text), fix.text)

    def _only_logged(self, root: str) -> bool:
        """``self.<root>`` is only made, logged whole, or reset in the class, and named nowhere else in the
        project (a callback or a helper function may update it)."""
        import re

        pattern = re.compile(rf"\.{re.escape(root)}\b\s*(\(|\.(update|forward)\b|\[)")
        if any(pattern.search(f.text) for f in self.table.project.files):
            return False
        for func, _ in self.table.methods.values():
            parents = {c: n for n in ast.walk(func) for c in ast.iter_child_nodes(n)}
            for node in ast.walk(func):
                dynamic = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                if dynamic and node.args[1:] and not isinstance(node.args[1], ast.Constant):
                    return False  # getattr(self, f"{stage}_acc") may name it
                if not (isinstance(node, ast.Attribute) and is_self(node.value) and node.attr == root):
                    continue
                parent = parents.get(node)
                if isinstance(node.ctx, ast.Store) or (isinstance(parent, ast.Assign) and parent.value is node):
                    continue  # made (or aliased in __init__: self.a = self.b is a new name, not an update)
                if isinstance(parent, ast.keyword):
                    parent = parents.get(parent)
                logged = isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute)
                if logged and node is not parent.func and parent.func.attr in ("log", "log_dict"):  # type: ignore[union-attr]
                    continue
                if isinstance(parent, ast.Attribute) and parent.attr in ("reset", "compute"):
                    continue
                return False
        return True


#: Codes whose fix rewrites the logging call itself.
_MOVED = ("running-value-averaged", "batch-values-averaged", "derived-value")


def _attrs_consumed(events: dict[str, MethodEvents]) -> set[str]:
    """Metric attributes whose accumulated state is read: compute() is called, or the object is logged."""
    consumed: set[str] = set()
    for method in events.values():
        for use in method.uses:
            if use.kind == "compute" and use.val is not None:
                consumed.update(_attrs(use.val))
        for log in method.logs:
            for _, val, _ in log.items:
                if val.kind == OBJECT:
                    consumed.update(_attrs(val))
    return consumed


def _attrs(val: Val) -> list[str]:
    out = []
    for target in val.targets:
        out.append(target.attr)
        if isinstance(target, GroupRef):
            out.extend(m.attr for m in target.metrics())
    return out


def _requires_dataloader_idx(func: ast.FunctionDef) -> bool:
    """``def validation_step(self, batch, batch_idx, dataloader_idx)``: several dataloaders, no default."""
    args = func.args.args
    defaults = len(func.args.defaults)
    for i, arg in enumerate(args):
        if "dataloader" in arg.arg:
            return i < len(args) - defaults
    return False


def _subject(name: str) -> str:
    return name.strip('"') if name.startswith('"') and name.endswith('"') else name


def _repr_key(name: str) -> str:
    """The key as the runtime's ``{name!r}`` writes it: ``'val_f1'``."""
    if name.startswith('"') and name.endswith('"'):
        return repr(name[1:-1].replace('\\"', '"').replace("\\\\", "\\"))
    return name


__all__ = ["UNKNOWN", "MetricRef", "ModuleCheck", "Raw"]
