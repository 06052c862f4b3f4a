"""Memory lmlogger holds: over many logged steps, for a metric reset every step, for a metric with a network.

    python benchmarks/memory.py           # quick: about 2 minutes of CPU time
    python benchmarks/memory.py --full    # the figures in docs/performance.md: about 30 minutes of CPU time

Each case is a real fit in a fresh process, in a temporary folder that is removed afterwards:

* steps: a minimal module (two ``self.log`` calls per step) under tracemalloc, plain and wrapped:
  growth of traced memory between step N/10 and step N (quick: N = 2,000; full: 100,000).
* windowed: a ``BinaryAUROC`` (cat states) and a ``BinaryF1Score`` (sum states) updated with 64
  samples and reset every step, the first logged on_step only, the second on_step and on_epoch:
  bytes of tensor storage lmlogger holds (beyond the user's own tensors) at step 20 and at the last
  step (quick: 200; full: 2,000).
* network: a metric owning a frozen feature extractor (quick: 4M parameters, 16 MiB; full: 64M,
  256 MiB) logged as an object on_epoch: bytes lmlogger holds after its reference was computed,
  beside the parameters' bytes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
from _common import fresh_logger, machine, make_trainer, run_child
from lightning.pytorch import Callback, LightningModule
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import Metric
from torchmetrics.classification import BinaryAUROC, BinaryF1Score

QUICK = {"steps": 2_000, "windowed": 200, "network": 2_000}
FULL = {"steps": 100_000, "windowed": 2_000, "network": 8_000}  # network: width of the extractor


# -- what lmlogger holds ----------------------------------------------------------------------------------
def _storages(root: object, skip: tuple[type, ...] = ()) -> dict[int, int]:
    """``{data_ptr: nbytes}`` of every tensor storage reachable from ``root`` through containers and
    object attributes (instances of ``skip`` are not entered)."""
    seen: set[int] = set()
    found: dict[int, int] = {}
    stack = [root]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen or isinstance(obj, (type, str, bytes, int, float, bool)):
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            found[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, skip) or (callable(obj) and not hasattr(obj, "__dict__")):
            continue
        elif isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        else:
            stack.extend(getattr(obj, "__dict__", {}).values())
            stack.extend(getattr(obj, slot, None) for slot in getattr(type(obj), "__slots__", ()))
    return found


def held_bytes(trainer: object, module: LightningModule) -> int:
    """Bytes of tensor storage reachable from lmlogger's session that are not the user's own tensors."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import Logger

    from lmlogger.runtime import _intercept

    session = _intercept.session_for(trainer)
    if session is None:
        return 0
    users: list[object] = []
    for m in module.modules():
        users += [*m._parameters.values(), *m._buffers.values()]
        if isinstance(m, Metric):
            users += [getattr(m, name) for name in m._defaults] + [m._forward_cache, m._computed]
    own = _storages(users)
    ours = _storages(session, skip=(Trainer, Logger, LightningModule))
    return sum(n for ptr, n in ours.items() if ptr not in own)


# -- the cases ---------------------------------------------------------------------------------------------
class Minimal(LightningModule):
    def __init__(self, marks: set[int]) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.f1 = BinaryF1Score()
        self.marks, self.mem, self.n = marks, {}, 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.f1.update(x[:, 0], y)
        self.log("loss", x.sum(), on_step=False, on_epoch=True)
        self.log("f1", self.f1, on_step=False, on_epoch=True)
        self.n += 1
        if self.n in self.marks:
            gc.collect()
            self.mem[self.n] = tracemalloc.get_traced_memory()[0]

    def configure_optimizers(self):
        return None


class Windowed(LightningModule):
    """Step-level metrics over a window of one step: updated, logged, reset, every step."""

    def __init__(self, marks: set[int]) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(16, 1)
        self.auroc = BinaryAUROC()
        self.f1 = BinaryF1Score()
        self.marks, self.held = marks, {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.layer(x).squeeze(-1)
        p = logits.sigmoid().detach()
        self.auroc.update(p, y)
        self.log("auroc_step", self.auroc.compute(), on_step=True, on_epoch=False)
        self.auroc.reset()
        self.f1.update(p, y)
        self.log("f1_window", self.f1.compute(), on_step=True, on_epoch=True)
        self.f1.reset()
        if batch_idx + 1 in self.marks:
            gc.collect()
            self.held[batch_idx + 1] = held_bytes(self.trainer, self)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class FeatureMean(Metric):
    """Like FID/KID/LPIPS: a frozen feature extractor and small sum states."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.extractor = torch.nn.Sequential(torch.nn.Linear(16, width), torch.nn.Linear(width, width))
        self.extractor.requires_grad_(False)
        self.add_state("total", torch.zeros(width, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, x: torch.Tensor) -> None:
        self.total += self.extractor(x).double().sum(0)
        self.n += x.shape[0]

    def compute(self) -> torch.Tensor:
        return (self.total / self.n).mean()


class WithNetwork(LightningModule):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(16, 1)
        self.fm = FeatureMean(width)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.fm.update(x)
        self.log("feature_mean", self.fm, on_step=False, on_epoch=True)
        return torch.nn.functional.binary_cross_entropy_with_logits(self.layer(x).squeeze(-1), y.float())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class AfterClose(Callback):
    """Runs after lmlogger's own callback (which is first), so the epoch's reference exists."""

    def on_train_end(self, trainer, pl_module):
        gc.collect()
        self.held = held_bytes(trainer, pl_module)


def child(case: str, wrapped: bool, size: int) -> dict:
    logger, root = fresh_logger("csv", wrapped)
    try:
        if case == "steps":
            first = size // 10
            model = Minimal({first, size})
            data = TensorDataset(torch.rand(size, 1), torch.randint(0, 2, (size,)))
            tracemalloc.start()
            make_trainer(logger, root, log_every_n_steps=10_000).fit(model, DataLoader(data, batch_size=1))
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*lmlogger*")])
            tracemalloc.stop()
            ours = sum(s.size for s in snapshot.statistics("filename"))
            return {"first": first, "growth": model.mem[size] - model.mem[first], "lmlogger_bytes": ours}
        if case == "windowed":
            model = Windowed({20, size})
            g = torch.Generator().manual_seed(0)
            x = torch.randn(size * 64, 16, generator=g)
            data = TensorDataset(x, (x[:, 0] > 0).long())
            make_trainer(logger, root).fit(model, DataLoader(data, batch_size=64))
            return {"held": model.held}
        model, probe = WithNetwork(size), AfterClose()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64 * 8, 16, generator=g)
        data = TensorDataset(x, (x[:, 0] > 0).long())
        make_trainer(logger, root, callbacks=[probe]).fit(model, DataLoader(data, batch_size=64))
        params = sum(p.numel() * p.element_size() for p in model.fm.extractor.parameters())
        return {"held": probe.held, "params": params, "n_params": sum(p.numel() for p in model.fm.parameters())}
    finally:
        del logger
        gc.collect()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the documented figures (about 30 minutes of CPU time)")
    parser.add_argument("--child", nargs=3, metavar=("CASE", "KIND", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, kind, size = args.child
        print(json.dumps(child(case, kind == "wrapped", int(size))))
        return
    sizes = FULL if args.full else QUICK
    script = os.path.abspath(__file__)

    def run(case: str, kind: str) -> dict:
        return run_child(script, "--child", case, kind, str(sizes[case]))

    print(f"machine: {machine()}  ({'--full' if args.full else 'quick; --full for the documented figures'})")
    held = {int(k): v for k, v in run("windowed", "wrapped")["held"].items()}
    last = sizes["windowed"]
    print("tensor bytes lmlogger holds, BinaryAUROC + BinaryF1Score updated with 64 samples and reset every step:")
    print(f"  at step 20: {held[20]:,} B   at step {last:,}: {held[last]:,} B")
    net = run("network", "wrapped")
    size = f"{net['n_params'] / 1e6:.1f}M parameters, {net['params'] / 2**20:.0f} MiB"
    print(f"metric owning a feature extractor ({size}):")
    print(f"  tensor bytes lmlogger holds after the epoch's reference: {net['held'] / 1024:.1f} KiB")
    plain, wrapped = run("steps", "plain"), run("steps", "wrapped")
    print(f"traced memory growth from step {plain['first']:,} to {sizes['steps']:,} (two self.log per step):")
    print(f"  plain CSVLogger:   {plain['growth'] / 1024:10.1f} KiB")
    print(f"  VerifiedLogger:    {wrapped['growth'] / 1024:10.1f} KiB")
    print(f"  allocations held by lmlogger's own code at the end: {wrapped['lmlogger_bytes'] / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
