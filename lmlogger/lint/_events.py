"""One pass over a method body: its ``self.log``/``self.log_dict`` calls, metric updates and resets,
and the methods of the class it calls, with each expression resolved by :mod:`._values`."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace

from lmlogger.lint._catalog import exact_mean
from lmlogger.lint._project import SourceFile
from lmlogger.lint._values import (
    COMPUTE,
    FORWARD,
    FUNCTIONAL,
    OBJECT,
    PASSTHROUGH,
    WRAPPING,
    ClassTable,
    DictVal,
    GroupRef,
    Val,
    is_self,
    literal_key,
    union,
)
from lmlogger.records._functional import FUNCTIONAL as FUNCTIONAL_CATALOG
from lmlogger.records._functional import SKLEARN, class_expression, render_value, sklearn_class

_LOG_ARGS = ("name", "value", "prog_bar", "logger", "on_step", "on_epoch", "reduce_fx")
_LOG_DICT_ARGS = ("dictionary", "prog_bar", "logger", "on_step", "on_epoch", "reduce_fx")
_MEAN_NAMES = frozenset({"mean", "avg", "torch.mean"})
UNKNOWN = "?"


@dataclass
class LogCall:
    """One ``self.log``/``self.log_dict`` call: the values it logs and its flags as written."""

    node: ast.Call
    items: list[tuple[str, Val, ast.expr | None]]  # (key as source text, value, value's expression)
    on_step: bool | str | None  # None: Lightning's default for the hook; "?": not known statically
    on_epoch: bool | str | None
    reduce_mean: bool
    as_dict: str | None  # log_dict(<collection result>): the collection's source text
    phases: frozenset[str] | None = None  # under a stage branch (``if stage == "train":``): only these phases


@dataclass
class Use:
    """``metric(...)``/``metric.forward(...)`` (``forward``), ``metric.update(...)`` or ``metric.reset()``."""

    node: ast.Call
    kind: str
    val: Val | None
    per_dataloader: bool  # under a condition on, or indexed by, a dataloader index
    phases: frozenset[str] | None = None  # under a stage branch (``if stage == "train":``): only these phases


@dataclass
class MethodEvents:
    logs: list[LogCall] = field(default_factory=list)
    uses: list[Use] = field(default_factory=list)
    calls: set[str] = field(default_factory=set)
    unresolved_reset: bool = False


def _flag(node: ast.expr | None) -> bool | str | None:
    if node is None:
        return None
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, bool)):
        return node.value
    return UNKNOWN


#: The words a stage argument or ``trainer.state.stage`` uses for each phase.
_STAGE_WORDS = {
    "train": "train",
    "training": "train",
    "fit": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "validate": "val",
    "test": "test",
    "testing": "test",
    "predict": "predict",
}
_PHASES = frozenset({"train", "val", "test", "predict"})


def stage_branch(test: ast.expr) -> frozenset[str] | None:
    """The phases in which ``test`` holds, when it compares something with stage names (``stage == "train"``,
    ``stage in ("val", "test")``, ``self.training``); ``None`` when it is not a stage test."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = stage_branch(test.operand)
        return _PHASES - inner if inner is not None else None
    if isinstance(test, ast.Attribute) and test.attr == "training" and is_self(test.value):
        return frozenset({"train"})
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    left, op, right = test.left, test.ops[0], test.comparators[0]
    if isinstance(left, ast.Constant) and isinstance(op, (ast.Eq, ast.NotEq)):
        left, right = right, left
    words: list[object] = []
    if isinstance(op, (ast.Eq, ast.NotEq)) and isinstance(right, ast.Constant):
        words = [right.value]
    elif isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, (ast.Tuple, ast.List, ast.Set)):
        words = [e.value if isinstance(e, ast.Constant) else None for e in right.elts]
    if not words or isinstance(left, ast.Constant):
        return None
    names = [w.lower().split(".")[-1] if isinstance(w, str) else None for w in words]
    if any(n not in _STAGE_WORDS for n in names):
        return None
    phases = frozenset(_STAGE_WORDS[n] for n in names)  # type: ignore[index]
    return _PHASES - phases if isinstance(op, (ast.NotEq, ast.NotIn)) else phases


def _mentions_dataloader(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and "dataloader" in n.id for n in ast.walk(node))


class Walker:
    """Resolves the expressions of one method of ``table`` and records its events."""

    def __init__(self, table: ClassTable, source: SourceFile) -> None:
        self.table = table
        self.source = source
        self.env: dict[str, Val | DictVal | None] = {}
        self.dict_env: dict[str, ast.Dict] = {}
        self.exprs: dict[str, ast.expr] = {}  # the expression a local name was last bound to
        self.events = MethodEvents()
        self.returns: list[Val | DictVal | None] = []
        self._dl_depth = 0
        self._phases: frozenset[str] | None = None  # the stage branch being walked

    # -- statements -------------------------------------------------------------------------------
    def run(self, func: ast.FunctionDef | ast.AsyncFunctionDef) -> MethodEvents:
        self.block(func.body)
        return self.events

    def returned(self, func: ast.FunctionDef | ast.AsyncFunctionDef) -> Val | DictVal | None:
        """What ``func`` returns, when every return gives the same kind of value (``None`` otherwise)."""
        self.block(func.body)
        values = [v for v in self.returns if v is not None]
        if not values or len(values) != len(self.returns):
            return None
        result = values[0]
        for value in values[1:]:
            result = union(result, value, ast.unparse(func.name)) if isinstance(value, Val) else result
        return result

    def block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self.stmt(stmt)

    def stmt(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return
        if isinstance(stmt, ast.If):
            self.scan(stmt.test)
            dl = _mentions_dataloader(stmt.test)
            self._dl_depth += dl
            branch, outer = stage_branch(stmt.test), self._phases
            if branch is not None:
                self._phases = branch if outer is None else branch & outer
            self.block(stmt.body)
            if branch is not None:
                self._phases = (_PHASES - branch) if outer is None else (_PHASES - branch) & outer
            self.block(stmt.orelse)
            self._phases = outer
            self._dl_depth -= dl
            return
        if isinstance(stmt, (ast.For, ast.AsyncFor)):
            self.scan(stmt.iter)
            self.bind_loop(stmt.target, stmt.iter)
            self.block(stmt.body)
            self.block(stmt.orelse)
            return
        if isinstance(stmt, (ast.While, ast.With, ast.AsyncWith, ast.Try)) or type(stmt).__name__ == "TryStar":
            for name in ("test",):
                if hasattr(stmt, name):
                    self.scan(getattr(stmt, name))
            for item in getattr(stmt, "items", []):
                self.scan(item.context_expr)
            for name in ("body", "orelse", "finalbody"):
                self.block(getattr(stmt, name, []))
            for handler in getattr(stmt, "handlers", []):
                self.block(handler.body)
            return
        self.scan(stmt)
        if isinstance(stmt, ast.Return) and stmt.value is not None:
            self.returns.append(self.ev(stmt.value))
        if isinstance(stmt, ast.Assign):
            value = self.ev(stmt.value)
            for target in stmt.targets:
                self.bind(target, value, stmt.value)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self.bind(stmt.target, self.ev(stmt.value), stmt.value)
        elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            self.env[stmt.target.id] = None

    def bind(self, target: ast.expr, value: Val | DictVal | None, node: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = value
            self.exprs[target.id] = node
            if isinstance(node, ast.Dict):
                self.dict_env[target.id] = node
            else:
                self.dict_env.pop(target.id, None)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.bind(element, None, element)

    def bind_loop(self, target: ast.expr, iterable: ast.expr) -> None:
        """``for m in self.metrics.values()``/``for name, m in self.metrics.items()``: ``m`` is any member."""
        node = iterable
        pair = False
        func = node.func if isinstance(node, ast.Call) else None
        if isinstance(func, ast.Attribute) and func.attr in ("values", "items"):
            pair = node.func.attr == "items"
            node = node.func.value
        value = self.ev(node)
        element: Val | None = None
        if isinstance(node, (ast.List, ast.Tuple)):  # for m in [self.train_f1, self.val_f1]
            members = [v for v in map(self.ev, node.elts) if isinstance(v, Val) and v.kind == OBJECT]
            if members:
                targets = tuple(dict.fromkeys(t for v in members for t in v.targets))
                element = Val(OBJECT, targets, ast.unparse(target), definite=len(targets) == 1)
        elif isinstance(value, Val):
            targets = tuple(m for t in value.targets if isinstance(t, GroupRef) for _, m in t.members)
            if targets:
                element = Val(value.kind, targets, ast.unparse(target), value.derived, definite=False)
        if pair and isinstance(target, ast.Tuple) and len(target.elts) == 2:
            self.bind(target.elts[0], None, target.elts[0])
            self.bind(target.elts[1], element, target.elts[1])
        else:
            self.bind(target, element, target)

    # -- calls ------------------------------------------------------------------------------------
    def scan(self, node: ast.AST) -> None:
        """Record every call in ``node`` (not in nested functions or lambdas)."""
        stack = [node]
        while stack:
            current = stack.pop()
            if isinstance(current, (ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(current, ast.Call):
                self.call(current)
            stack.extend(ast.iter_child_nodes(current))

    def call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            if is_self(func.value):
                if func.attr in ("log", "log_dict"):
                    self.log_call(node, func.attr == "log_dict")
                    return
                if func.attr in self.table.methods:
                    self.events.calls.add(func.attr)
                    return
            if func.attr in ("update", "reset", "forward", "compute"):
                receiver = self.ev(func.value)
                if isinstance(receiver, Val) and receiver.kind == OBJECT:
                    self.use(node, func.attr, receiver, func.value)
                elif func.attr == "reset":  # a reset of something unresolved may reset any metric
                    self.events.unresolved_reset = True
                return
        receiver = self.ev(func)
        if isinstance(receiver, Val) and receiver.kind == OBJECT:
            self.use(node, "forward", receiver, func)

    def use(self, node: ast.Call, kind: str, val: Val, receiver: ast.expr) -> None:
        per_dataloader = self._dl_depth > 0 or _mentions_dataloader(receiver)
        self.events.uses.append(Use(node, kind, val, per_dataloader, self._phases))

    def log_call(self, node: ast.Call, as_dict: bool) -> None:
        names = _LOG_DICT_ARGS if as_dict else _LOG_ARGS
        args: dict[str, ast.expr] = dict(zip(names, node.args, strict=False))
        for keyword in node.keywords:
            if keyword.arg is not None:
                args[keyword.arg] = keyword.value
            else:  # **self.log_conf / **kwargs: read the dict literal it was made from
                spread = self._spread(keyword.value)
                if spread is None:
                    args.setdefault("on_step", ast.Name(UNKNOWN))
                    args.setdefault("on_epoch", ast.Name(UNKNOWN))
                else:
                    for key, value in zip(spread.keys, spread.values, strict=False):
                        if isinstance(literal_key(key) if key is not None else None, str):
                            args.setdefault(key.value, value)  # type: ignore[union-attr]
        reduce_fx = args.get("reduce_fx")
        reduce_mean = reduce_fx is None or (ast.unparse(reduce_fx).strip("'\"") in _MEAN_NAMES)
        items: list[tuple[str, Val, ast.expr | None]] = []
        whole: str | None = None
        if as_dict:
            value = self.ev(args["dictionary"]) if "dictionary" in args else None
            if isinstance(value, DictVal):
                items = [(k, v, None) for k, v in value.items if isinstance(v, Val)]
            elif isinstance(value, Val):
                items = [("", value, None)]
                whole = value.text
        elif "value" in args:
            value = self.ev(args["value"])
            if isinstance(value, Val):
                name = args.get("name")
                expr = args["value"]
                if isinstance(expr, ast.Name) and expr.id in self.exprs:
                    expr = self.exprs[expr.id]  # pct = self.f1.compute() * 100; self.log("pct", pct)
                items = [(_key_text(name) if name is not None else '"?"', value, expr)]
        if items:
            on_step, on_epoch = _flag(args.get("on_step")), _flag(args.get("on_epoch"))
            self.events.logs.append(LogCall(node, items, on_step, on_epoch, reduce_mean, whole, self._phases))

    def _spread(self, node: ast.expr) -> ast.Dict | None:
        if isinstance(node, ast.Dict):
            return node
        if isinstance(node, ast.Name):
            return self.dict_env.get(node.id)
        if isinstance(node, ast.Attribute) and is_self(node.value):
            return self.table.dicts.get(node.attr)
        return None

    # -- expressions ------------------------------------------------------------------------------
    def ev(self, node: ast.expr) -> Val | DictVal | None:
        if isinstance(node, ast.Name):
            return self.env.get(node.id)
        if isinstance(node, ast.Attribute):
            if is_self(node.value):
                target = self.table.attrs.get(node.attr)
                return Val(OBJECT, (target,), f"self.{node.attr}") if target is not None else None
            base = self.ev(node.value)
            if isinstance(base, Val) and base.kind == OBJECT:
                return _member(base, node.attr, f"{base.text}.{node.attr}")
            if isinstance(base, Val) and node.attr in ("data", "T"):
                return base
            return None
        if isinstance(node, ast.Subscript):
            base = self.ev(node.value)
            key = literal_key(node.slice)
            if isinstance(base, DictVal):
                return next((v for k, v in base.items if k == _key_text(node.slice)), None)
            if isinstance(base, Val):
                if base.kind == OBJECT or any(isinstance(t, GroupRef) for t in base.targets):
                    member = _member(base, key, ast.unparse(node) if base.kind == OBJECT else base.text)
                    return member
                return replace(base, index=f"[{ast.unparse(node.slice)}]")  # an element view keeps its provenance
            return None
        if isinstance(node, ast.Call):
            return self._ev_call(node)
        if isinstance(node, ast.BinOp):
            return _derived(self.ev(node.left), self.ev(node.right))
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not):
            return _derived(self.ev(node.operand), None)
        if isinstance(node, ast.IfExp):
            return union(self.ev(node.body), self.ev(node.orelse), ast.unparse(node))
        if isinstance(node, ast.Dict):
            items: list[tuple[str, Val | None]] = []
            for key, value in zip(node.keys, node.values, strict=False):
                ev = self.ev(value)
                if key is None:
                    if isinstance(ev, DictVal):
                        items.extend(ev.items)
                    elif isinstance(ev, Val):
                        items.append(("", ev))
                else:
                    items.append((_key_text(key), ev if isinstance(ev, Val) else None))
            return DictVal(tuple(items))
        if isinstance(node, ast.DictComp) and len(node.generators) == 1:
            generator = node.generators[0]
            saved = dict(self.env)
            self.bind_loop(generator.target, generator.iter)
            if isinstance(generator.iter, ast.Call) and isinstance(generator.iter.func, ast.Attribute):
                source = self.ev(generator.iter.func.value)
                if isinstance(source, Val) and source.kind != OBJECT and isinstance(generator.target, ast.Tuple):
                    self.bind(generator.target.elts[-1], source, generator.target.elts[-1])
            value = self.ev(node.value)
            self.env = saved
            return DictVal(((_key_text(node.key), value if isinstance(value, Val) else None),))
        return None

    def _ev_call(self, node: ast.Call) -> Val | DictVal | None:
        func = node.func
        if isinstance(func, ast.Attribute):
            method = func.attr
            base = self.ev(func.value)
            if isinstance(base, Val):
                if base.kind == OBJECT:
                    if method == "compute":
                        return replace(base, kind=COMPUTE)
                    if method == "forward":
                        return replace(base, kind=FORWARD)
                    if method in ("clone", "values"):
                        return base
                    return None
                if method in PASSTHROUGH or method in ("items", "values"):
                    return base
                return replace(base, derived=True)
            if isinstance(base, DictVal):
                return base if method in ("copy",) else None
            if is_self(func.value) and method in self.table.methods:
                return self.table.returned(method, lambda f, s: Walker(self.table, s).returned(f))
            if is_self(func.value):
                callee = self.ev(func)  # self.val_f1(preds, y)
                return replace(callee, kind=FORWARD) if isinstance(callee, Val) and callee.kind == OBJECT else None
            dotted = self.source.dotted(func) or ""
            last = dotted.rsplit(".", 1)[-1]
            functional = _functional(node, dotted)
            if functional is not None:
                return functional
            if last in WRAPPING and node.args:
                return self.ev(node.args[0])
            if dotted.startswith(("torch.", "np.", "numpy.")) and node.args:
                first = self.ev(node.args[0])
                return replace(first, derived=True) if isinstance(first, Val) and first.kind != OBJECT else None
            return None
        if isinstance(func, ast.Name):
            functional = _functional(node, self.source.dotted(func) or "")
            if functional is not None and func.id not in self.env:
                return functional
            if func.id in WRAPPING and node.args:
                return self.ev(node.args[0])
            if func.id == "getattr" and len(node.args) >= 2 and is_self(node.args[0]):
                return self._getattr(node.args[1])
            if func.id == "dict" and not node.args:
                return DictVal(tuple((f'"{k.arg}"', _only_val(self.ev(k.value))) for k in node.keywords if k.arg))
        callee = self.ev(func)
        if isinstance(callee, Val) and callee.kind == OBJECT:
            return replace(callee, kind=FORWARD)
        return None

    def _getattr(self, name: ast.expr) -> Val | None:
        """``getattr(self, "val_f1")``, or ``getattr(self, f"{stage}_f1")``: any attribute that fits."""
        key = literal_key(name)
        if isinstance(key, str):
            target = self.table.attrs.get(key)
            return Val(OBJECT, (target,), f"self.{key}") if target is not None else None
        if isinstance(name, ast.JoinedStr):
            import re

            pattern = "".join(re.escape(part.value) if isinstance(part, ast.Constant) else ".+" for part in name.values)
            matched = tuple(t for attr, t in self.table.attrs.items() if re.fullmatch(pattern, attr))
            if matched:
                return Val(OBJECT, matched, ast.unparse(ast.Call(ast.Name("getattr"), [ast.Name("self"), name], [])),
                           definite=len(matched) == 1)  # fmt: skip
        return None


def _source_value(node: ast.expr) -> str:
    """An argument as the runtime prints it (``0.3``, ``"macro"``), or its source text."""
    if isinstance(node, ast.Constant):
        return render_value(node.value)
    return ast.unparse(node)


def _functional(node: ast.Call, dotted: str) -> Val | None:
    """A call of a torchmetrics functional metric or of an ``sklearn.metrics`` function: the batch's value."""
    name = dotted.rsplit(".", 1)[-1]
    if dotted.startswith("torchmetrics.functional.") and name in FUNCTIONAL_CATALOG:
        cls, params, ndata = FUNCTIONAL_CATALOG[name]
        if cls is None:
            return None  # no Metric computes it over many batches: no fix to offer
        args: dict[str, ast.expr] = dict(zip(params, node.args, strict=False))
        args.update((k.arg, k.value) for k in node.keywords if k.arg is not None)
        options = [(p, args[p]) for p in params[ndata:] if p in args]
        synthetic = ast.Call(ast.Name(cls), [], [ast.keyword(p, v) for p, v in options])
        if exact_mean(cls, synthetic):
            return Val(FUNCTIONAL, (), name)
        expression = class_expression(cls, [(p, _source_value(v)) for p, v in options])
        return Val(FUNCTIONAL, (), name, functional=expression, functional_data=", ".join(params[:ndata]))
    if dotted.startswith("sklearn.metrics.") and name in SKLEARN:
        keywords = {k.arg: _source_value(k.value) for k in node.keywords if k.arg is not None}
        return Val(FUNCTIONAL, (), name, functional=sklearn_class(name, keywords))
    return None


def _only_val(value: Val | DictVal | None) -> Val | None:
    return value if isinstance(value, Val) else None


def _member(base: Val, key: str | int | None, text: str) -> Val | None:
    """A member of a collection/container ``base`` (any member when ``key`` is not a literal)."""
    found = []
    for target in base.targets:
        if not isinstance(target, GroupRef):
            continue
        for member_key, member in target.members:
            if key is None or member_key in (str(key), "*"):
                found.append(member)
    if not found:
        return None
    definite = base.definite and key is not None and len(found) == 1
    return Val(base.kind, tuple(dict.fromkeys(found)), text, base.derived, definite)


def _derived(a: Val | DictVal | None, b: Val | DictVal | None) -> Val | None:
    """Arithmetic on a ``compute()``/``forward()`` result: the result is derived from it."""
    for value in (a, b):
        if isinstance(value, Val) and value.kind != OBJECT:
            return replace(value, derived=True)
    return None


def _key_text(node: ast.expr) -> str:
    """A logged key as source: ``"val_f1"`` for a literal, the expression otherwise (``f'{stage}_f1'``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return '"' + node.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return ast.unparse(node)
