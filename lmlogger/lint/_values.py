"""What an expression in a LightningModule is, as far as logging is concerned, found without running it.

A metric attribute (``self.val_f1``), a metric's ``compute()`` result, its ``forward()`` result, or
something derived from one; collections and containers of metrics keep their members. The class table
(every ``self.X = <metric>`` in any method of the class and its bases) is built here too.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace

from lmlogger.lint._catalog import COLLECTIONS, WRAPPERS, exact_mean
from lmlogger.lint._project import ClassInfo, Project, SourceFile, is_metric_origin

OBJECT = "object"
COMPUTE = "compute"
FORWARD = "forward"
#: The value of a functional metric (``torchmetrics.functional...``, ``sklearn.metrics...``) of one batch.
FUNCTIONAL = "functional"

#: Methods of a tensor (or number) that keep its value: element views and copies, not arithmetic.
PASSTHROUGH = frozenset(
    {"item", "detach", "cpu", "cuda", "float", "double", "half", "clone", "to", "squeeze", "numpy", "tolist", "type"}
)
#: Calls that wrap a value without changing it: ``float(x)``, ``torch.tensor(x)``, ``round(x, 4)``.
WRAPPING = frozenset({"float", "int", "round", "tensor", "as_tensor", "asarray", "array", "float32", "float64"})


@dataclass(frozen=True)
class MetricRef:
    """One metric instance: where the module keeps it, its class and whether its epoch value is a mean."""

    attr: str
    cls: str | None
    exact: bool | None  # None: a metric of the tree whose nature is unknown


@dataclass(frozen=True)
class GroupRef:
    """A ``MetricCollection`` (``collection``) or a plain container (``ModuleDict``/``ModuleList``/dict)."""

    attr: str
    members: tuple[tuple[str, MetricRef | GroupRef], ...]
    collection: bool

    def metrics(self) -> list[MetricRef]:
        out: list[MetricRef] = []
        for _, member in self.members:
            out.extend(member.metrics() if isinstance(member, GroupRef) else [member])
        return out


Target = MetricRef | GroupRef


def metrics_of(targets: tuple[Target, ...]) -> list[MetricRef]:
    """Every metric instance behind ``targets``."""
    out: list[MetricRef] = []
    for target in targets:
        out.extend(target.metrics() if isinstance(target, GroupRef) else [target])
    return out


@dataclass(frozen=True)
class Val:
    """An expression's value: a metric object, or a ``compute()``/``forward()`` result of one."""

    kind: str
    targets: tuple[Target, ...]
    text: str  # source of the metric object's expression, e.g. ``self.val_f1``
    derived: bool = False
    definite: bool = True  # one metric for sure, not one of several
    index: str | None = None  # an element of the result was taken: ``[0]``, ``['f1']``
    #: FUNCTIONAL: the Metric class (with the call's arguments) whose epoch value the batch mean is not;
    #: ``None`` when the batch-size-weighted mean of batch values is the epoch value (micro accuracy, MSE)
    functional: str | None = None
    functional_data: str = "preds, target"


@dataclass(frozen=True)
class DictVal:
    """A dict literal (or comprehension) of logged values: ``{"f1": self.f1.compute(), ...}``."""

    items: tuple[tuple[str, Val | None], ...]


def union(a: Val | DictVal | None, b: Val | DictVal | None, text: str) -> Val | DictVal | None:
    """Either of two values (``x if c else y``)."""
    if not isinstance(a, Val) or not isinstance(b, Val) or a.kind != b.kind:
        return a if isinstance(a, Val) else b if isinstance(b, Val) else None
    targets = tuple(dict.fromkeys(a.targets + b.targets))
    return Val(a.kind, targets, a.text if a.text == b.text else text, a.derived or b.derived, len(targets) == 1)


def literal_key(node: ast.expr) -> str | int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)):
        return node.value
    return None


def is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def anchor(target: Target, attr: str) -> Target:
    """The same metric(s) as kept under ``self.<attr>`` (a ``clone()`` is a new instance)."""
    if isinstance(target, MetricRef):
        return replace(target, attr=attr)
    members = tuple((key, anchor(member, _index(attr, key))) for key, member in target.members)
    return GroupRef(attr, members, target.collection)


def _index(attr: str, key: str) -> str:
    return f"{attr}[{key}]" if key.isdigit() else f"{attr}[{key!r}]"


@dataclass
class ClassTable:
    """The metric attributes of one LightningModule (its bases and mixins included) and its methods."""

    info: ClassInfo
    project: Project
    methods: dict[str, tuple[ast.FunctionDef, SourceFile]] = field(default_factory=dict)
    attrs: dict[str, Target] = field(default_factory=dict)
    dicts: dict[str, ast.Dict] = field(default_factory=dict)  # self.log_conf = {"on_epoch": True, ...}
    _returns: dict[str, Val | DictVal | None] = field(default_factory=dict)

    def returned(self, name: str, walk) -> Val | DictVal | None:
        """What the class's own method ``name`` returns (``self.compute_metrics(...)``), once per method;
        a method that (indirectly) calls itself returns nothing known."""
        if name not in self._returns:
            self._returns[name] = None  # a recursion guard while it is walked
            func, source = self.methods[name]
            self._returns[name] = walk(func, source)
        return self._returns[name]

    @classmethod
    def build(cls, info: ClassInfo, project: Project) -> ClassTable:
        table = cls(info, project)
        lineage = project.lineage(info)
        for member in lineage:  # nearest first: a subclass's method overrides its base's
            for node in member.node.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    table.methods.setdefault(node.name, (node, member.file))  # type: ignore[arg-type]
        for _ in range(2):  # twice: ``self.val = self.train.clone()`` may precede ``self.train = ...``
            for member in reversed(lineage):
                for node in member.node.body:
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        table._collect(node, member.file)
        return table

    def _collect(self, func: ast.FunctionDef | ast.AsyncFunctionDef, source: SourceFile) -> None:
        local: dict[str, Target] = {}
        for node in self.project.assignments(func):
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "setattr"
                and len(node.args) == 3
                and is_self(node.args[0])
                and isinstance(literal_key(node.args[1]), str)
            ):
                targets, value = [ast.Attribute(ast.Name("self"), node.args[1].value)], node.args[2]  # type: ignore[union-attr]
            else:
                continue
            made = self.construct(value, source, local)
            for target in targets:
                if isinstance(target, ast.Name) and made is not None:
                    local[target.id] = made
                elif isinstance(target, ast.Attribute) and is_self(target.value):
                    if made is not None:
                        self.attrs[target.attr] = anchor(made, target.attr)
                    elif isinstance(value, ast.Dict) and target.attr not in self.attrs:
                        self.dicts[target.attr] = value

    def metric_class(self, node: ast.expr, source: SourceFile) -> str | None:
        """The class name when ``node`` names a metric class (torchmetrics, or a Metric of the tree)."""
        dotted = source.dotted(node)
        if dotted is None:
            return None
        name = dotted.rsplit(".", 1)[-1]
        if is_metric_origin(dotted):
            return name
        if any(self.project.is_metric_class(info) for info in self.project.resolve(dotted)):
            return name
        return None

    def construct(self, node: ast.expr, source: SourceFile, local: dict[str, Target]) -> Target | None:
        """The metric(s) an expression in ``__init__``/``setup`` makes, if any."""
        if isinstance(node, ast.Name):
            return local.get(node.id)
        if isinstance(node, ast.Attribute) and is_self(node.value):
            return self.attrs.get(node.attr)
        if isinstance(node, (ast.Dict, ast.List, ast.Tuple)):
            return self._group(node, source, local, collection=False)
        if isinstance(node, (ast.DictComp, ast.ListComp)):
            made = self.construct(node.value if isinstance(node, ast.DictComp) else node.elt, source, local)
            return GroupRef("", (("*", made),), collection=False) if made is not None else None
        if not isinstance(node, ast.Call):
            return None
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "clone":
            return self.construct(func.value, source, local)
        name = self.metric_class(func, source)
        dotted = source.dotted(func) or ""
        if name is None:
            if dotted.rsplit(".", 1)[-1] in ("ModuleDict", "ModuleList", "dict", "list") and node.args:
                return self.construct(node.args[0], source, local)
            if dotted.rsplit(".", 1)[-1] == "dict" and node.keywords:
                as_dict = ast.Dict([ast.Constant(k.arg) for k in node.keywords], [k.value for k in node.keywords])
                return self._group(as_dict, source, local, collection=False)
            return None
        if name in COLLECTIONS:
            members: list[tuple[str, Target]] = []
            for arg in node.args:
                group = self._group(arg, source, local, collection=True)
                if isinstance(group, GroupRef):
                    members.extend(group.members)
                elif group is not None:
                    members.append((group.attr or "?", group))
            return GroupRef("", tuple(members), collection=True)
        if name in WRAPPERS and node.args:
            inner = self.construct(node.args[0], source, local)
            if isinstance(inner, MetricRef):
                return MetricRef("", inner.cls, inner.exact)
            return MetricRef("", name, False)
        tree_metric = not is_metric_origin(dotted)
        return MetricRef("", name, None if tree_metric else exact_mean(name, node))

    def _group(self, node: ast.expr, source: SourceFile, local: dict[str, Target], collection: bool) -> Target | None:
        members: list[tuple[str, Target]] = []
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=False):
                made = self.construct(value, source, local)
                if made is not None:
                    k = literal_key(key) if key is not None else None
                    members.append((str(k) if k is not None else "*", made))
        elif isinstance(node, (ast.List, ast.Tuple)):
            for i, value in enumerate(node.elts):
                made = self.construct(value, source, local)
                if made is not None:
                    key = made.cls if collection and isinstance(made, MetricRef) and made.cls else str(i)
                    members.append((key, made))
        else:
            made = self.construct(node, source, local)
            if made is not None and collection and isinstance(made, MetricRef):
                return GroupRef("", ((made.cls or "?", made),), collection=True)
            return made
        return GroupRef("", tuple(members), collection) if members else None
