"""lmlogger from a LightningCLI config: ``trainer.logger`` is a VerifiedLogger wrapping another logger.

Run:  python examples/lightning_cli.py fit --config examples/cli_config.yaml

Every setting can be overridden on the command line, for example::

    python examples/lightning_cli.py fit --config examples/cli_config.yaml \\
        --trainer.max_epochs=1 \\
        --trainer.logger.init_args.on_mismatch=raise \\
        --trainer.logger.init_args.logger.init_args.save_dir=/tmp/logs

or without a config file::

    python examples/lightning_cli.py fit --trainer.logger=lmlogger.VerifiedLogger \\
        --trainer.logger.logger=lightning.pytorch.loggers.CSVLogger --trainer.logger.logger.save_dir=logs

The model is the quickstart's (``f1_wrong`` is logged the wrong way on purpose); after ``fit`` the
script prints the audit of the run.
"""

from __future__ import annotations

import warnings

from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI
from quickstart import Classifier, data

from lmlogger import VerifiedLogger


class QuickstartData(LightningDataModule):
    """The quickstart's synthetic data."""

    def __init__(self, n: int = 200) -> None:
        super().__init__()
        self.n = n

    def train_dataloader(self):
        return data(self.n)


def main(args: list[str] | None = None) -> LightningCLI:
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    cli = LightningCLI(Classifier, QuickstartData, args=args)
    logger = cli.trainer.logger
    if isinstance(logger, VerifiedLogger) and logger.sidecar_path is not None:
        print(f"\nRun written to {logger.log_dir}")
        print(logger.report())
    return cli


if __name__ == "__main__":
    main()
