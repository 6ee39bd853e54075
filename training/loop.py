"""The training loop: epochs, resumable checkpoints, JSON-lines log, evaluation, selection.

Every random choice is a function of (seed, epoch, step): the data order
(:func:`training.distributed.epoch_permutation`), each sample's augmentation and exo draws
(the dataset's per-item generator) and the k-means initialisation (seeded per global step).
So a run resumed from ``last.pt`` takes exactly the steps an uninterrupted run would.

``last.pt`` is written at every epoch end, every ``checkpoint_every_steps`` steps and
``checkpoint_every_minutes`` minutes (what a SIGKILL can lose), and when SIGINT or SIGTERM
arrives: the step in flight finishes, the state is saved and :class:`TrainingInterrupted` is
raised. On resume the log is cut back to the checkpoint, so redone steps are not logged twice.
"""

import contextlib
import dataclasses
import functools
import json
import logging
import os
from pathlib import Path
import random
import signal
import sys
import time
from typing import Any, Dict, Iterator, List, Optional

from affordance_grounding.config import load_model_config
from affordance_grounding.fileio import atomic_write
from affordance_grounding.inference.selection import resolve_device as resolve_device_name
from affordance_grounding.model.checkpoint import save_bundle
from affordance_grounding.model.factory import build_grounder_with_tables
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from training.checkpointing import load_train_state, restore_rng_state, save_train_state
from training.config import TrainConfig
from training.data import build_datasets, build_train_loader
from training.distributed import (
    barrier, DistributedContext, epoch_permutation, shard_for_rank)
from training.evaluate import (
    evaluate_features, extract_test_features, format_table, split_for_selection,
    summaries_to_dict, write_contact_sheet)
from training.losses import build_param_groups
from training.model import SelectiveCLModel
from training.run_files import write_json
from training.step import SelectiveCLObjective, TrainBatch

LOGGER = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)  # one answer (and one warning) per process
def resolve_device(name: str) -> torch.device:
    """Apply the runtime's device rule (``auto``: CUDA if available, else the CPU + a warning)."""
    return torch.device(resolve_device_name(name))


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training after a step; ``last.pt`` holds that step."""

    def __init__(self, signal_number: int, progress: 'Progress', checkpoint: Path):
        """Record which signal stopped the run and where it stands."""
        self.signal_number = signal_number
        self.progress = progress
        self.checkpoint = checkpoint
        super().__init__(f'{signal.Signals(signal_number).name} at epoch {progress.epoch} '
                         f'step {progress.step_in_epoch} (global step {progress.global_step})')


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class JsonLinesLog:
    """Append-only JSON-lines log (one object per step or epoch)."""

    def __init__(self, path: Path, enabled: bool):
        """Open ``path`` for appending (only on the main process)."""
        self.path = path
        self.enabled = enabled

    def write(self, record: Dict[str, Any]) -> None:
        """Append one record with a wall-clock time stamp."""
        if not self.enabled:
            return
        with self.path.open('a') as stream:
            stream.write(json.dumps({'time': round(time.time(), 3), **record}) + '\n')

    def truncate_to(self, progress: 'Progress') -> int:
        """Drop the records written after a checkpoint's ``progress``; returns how many.

        Kept: step records up to ``progress.global_step``, epoch records of finished epochs,
        and ``before_training`` once training has started (a fresh start writes a new one).
        """
        if not self.enabled or not self.path.exists():
            return 0
        lines = self.path.read_text().splitlines()
        kept = [line for line in lines if self._before(json.loads(line), progress)]
        if len(kept) != len(lines):
            atomic_write(self.path, lambda path: path.write_text(
                ''.join(line + '\n' for line in kept)))
        return len(lines) - len(kept)

    @staticmethod
    def _before(record: Dict[str, Any], progress: 'Progress') -> bool:
        """Whether a record describes training up to ``progress`` (kept on resume)."""
        event = record.get('event')
        if event == 'step':
            return record['step'] <= progress.global_step
        if event == 'epoch':
            return record['epoch'] < progress.epoch
        return progress.global_step > 0


@dataclasses.dataclass
class Progress:
    """Where training stands; saved in ``last.pt``."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_score: float = float('inf')
    best_epoch: int = -1
    finished: bool = False


class Trainer:
    """Owns the model, optimiser, data and bookkeeping of one training run."""

    def __init__(self, config: TrainConfig, context: DistributedContext = DistributedContext()):
        """Build everything from the config (datasets, model, optimiser, log)."""
        self.config = config
        self.context = context
        seed_everything(config.seed)
        model_config = load_model_config(config.model_config)
        self.train_set, self.test_set = build_datasets(config, model_config)
        self.device = resolve_device(config.device)
        if self.device.type == 'cuda' and context.enabled:
            self.device = torch.device('cuda', context.local_rank)
        grounder, tables = build_grounder_with_tables(model_config)
        self.model = SelectiveCLModel(grounder, tables['person'], config.bn_momentum)
        self.model.to(self.device).train()
        self.heads = self.model
        if context.enabled:
            self.heads = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == 'cuda' else None,
                find_unused_parameters=not (config.use_proto_loss and config.use_pixel_loss))
        self.optimizer = torch.optim.SGD(
            build_param_groups(self.model.trainable_modules(), config.lr, config.weight_decay),
            lr=config.lr, momentum=config.momentum, nesterov=True)
        self.objective = SelectiveCLObjective(config)
        self.progress = Progress()
        self.out_dir = Path(config.out_dir)  # created only once data and model are there
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log = JsonLinesLog(self.out_dir / 'log.jsonl', context.is_main)
        self.stop_signal: Optional[int] = None
        self._last_saved = time.monotonic()
        self.test_features = None
        self.before_training: Dict[str, Any] = {}
        self.selection_indices: Optional[List[int]] = None
        self.report_indices: Optional[List[int]] = None

    # ----------------------------------------------------------------- checkpoints
    def trainable_state(self) -> Dict[str, Dict[str, torch.Tensor]]:
        """State dicts of the trainable modules (BN running statistics included)."""
        return {name: module.state_dict()
                for name, module in self.model.trainable_modules().items()}

    def save_last(self) -> None:
        """Write ``last.pt`` (main process only)."""
        if self.context.is_main:
            save_train_state(self.out_dir / 'last.pt', trainable=self.trainable_state(),
                             optimizer=self.optimizer,
                             progress=dataclasses.asdict(self.progress),
                             config=dataclasses.asdict(self.config))
        self._last_saved = time.monotonic()

    def checkpoint_due(self) -> bool:
        """Whether the periodic mid-epoch ``last.pt`` is due after the step just taken."""
        every_steps = self.config.checkpoint_every_steps
        every_s = self.config.checkpoint_every_minutes * 60.0
        return bool((every_steps and self.progress.global_step % every_steps == 0)
                    or (every_s and time.monotonic() - self._last_saved >= every_s))

    @contextlib.contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """Turn SIGINT/SIGTERM into a request to stop after the current step.

        A second signal of the same kind gets the default behaviour (stop at once, no save).
        Only in the main thread, where Python allows handlers; elsewhere a no-op.
        """
        owner = os.getpid()

        def request_stop(number, _frame):
            if os.getpid() != owner:  # a forked data-loader worker: the main process decides
                return
            self.stop_signal = number
            signal.signal(number, previous[number])
            tqdm.write(f'{signal.Signals(number).name}: saving last.pt after this step '
                       '(send it again to stop at once without saving)', file=sys.stderr)

        try:
            previous = {number: signal.signal(number, request_stop)
                        for number in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread
            yield
            return
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def stop_if_requested(self) -> None:
        """Save ``last.pt`` and raise TrainingInterrupted when a signal asked to stop."""
        if self.stop_signal is not None:
            self.save_last()
            raise TrainingInterrupted(self.stop_signal, self.progress, self.out_dir / 'last.pt')

    def resume(self) -> bool:
        """Continue from ``last.pt`` if present; returns whether a state was loaded."""
        state = load_train_state(self.out_dir / 'last.pt')
        if state is None:
            return False
        for name, module in self.model.trainable_modules().items():
            module.load_state_dict(state['trainable'][name])
        self.optimizer.load_state_dict(state['optimizer'])
        self.progress = Progress(**state['progress'])
        restore_rng_state(state['rng'])
        dropped = self.log.truncate_to(self.progress)
        LOGGER.info('resumed at epoch %d step %d%s', self.progress.epoch,
                    self.progress.step_in_epoch,
                    f' (dropped {dropped} log records written after that checkpoint)'
                    if dropped else '')
        return True

    def save_best(self, metrics: Dict[str, Any]) -> Path:
        """Write the current model as an inference bundle ``best.pt``."""
        return save_bundle(str(self.out_dir / 'best.pt'), self.model.grounder,
                           person_text=self.model.person_text,
                           training_state=self.model.training_state(),
                           metadata={'epoch': self.progress.epoch,
                                     'global_step': self.progress.global_step,
                                     'selection_metrics': metrics,
                                     'train_config': dataclasses.asdict(self.config)})

    # ----------------------------------------------------------------- training
    def epoch_batches(self, epoch: int) -> List[List[int]]:
        """Index lists of this process's batches for an epoch."""
        order = shard_for_rank(epoch_permutation(len(self.train_set), self.config.seed, epoch),
                               self.context).tolist()
        size = self.config.batch_size
        batches = [order[start:start + size] for start in range(0, len(order), size)]
        if self.config.max_steps_per_epoch:
            batches = batches[:self.config.max_steps_per_epoch]
        return batches

    def train_epoch(self, epoch: int, stop_after_steps: int = 0) -> bool:
        """Run the rest of an epoch; returns False if stopped early by ``stop_after_steps``."""
        batches = self.epoch_batches(epoch)[self.progress.step_in_epoch:]
        loader = build_train_loader(self.train_set, self.config.batch_size,
                                    workers=self.config.workers, epoch=epoch,
                                    pin_memory=self.device.type == 'cuda', batches=batches)
        bar = tqdm(loader, desc=f'epoch {epoch}', disable=not self.context.is_main,
                   initial=self.progress.step_in_epoch,
                   total=self.progress.step_in_epoch + len(batches))
        try:
            for items in bar:
                started = time.perf_counter()
                record = self.train_step(items, epoch)
                record['samples_per_s'] = round(len(items.labels) * self.context.world_size
                                                / (time.perf_counter() - started), 2)
                bar.set_postfix({key: f'{value:.3g}' for key, value in record.items()
                                 if key in ('total', 'ce_ego', 'proto', 'pix', 'samples_per_s')})
                self.log.write({'event': 'step', 'epoch': epoch,
                                'step': self.progress.global_step, **record})
                if stop_after_steps and self.progress.global_step >= stop_after_steps:
                    self.save_last()
                    return False
                self.stop_if_requested()
                if self.checkpoint_due():
                    self.save_last()
        except (RuntimeError, KeyboardInterrupt):
            # Ctrl-C reaches the loader's worker processes too; the one that dies takes the
            # loader with it. The state after the last finished step is still consistent.
            if self.stop_signal is None:
                raise
            self.stop_if_requested()
        finally:
            bar.close()
        return True

    def train_step(self, items, epoch: int) -> Dict[str, float]:
        """One optimiser step; returns the logged loss components."""
        batch = TrainBatch(ego=items.ego.to(self.device, non_blocking=True),
                           exo=items.exo.to(self.device, non_blocking=True),
                           labels=items.labels.to(self.device, non_blocking=True))
        generator = torch.Generator(device=self.device).manual_seed(
            self.config.seed * 1_000_003 + self.progress.global_step)
        use_amp = self.config.amp and self.device.type == 'cuda'
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                            enabled=use_amp):
            result = self.objective(self.model, batch, epoch, generator, self.heads)
        self.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        self.optimizer.step()
        self.progress.step_in_epoch += 1
        self.progress.global_step += 1
        return {name: float(value) for name, value in result.components.items()}

    # ----------------------------------------------------------------- evaluation
    def prepare_evaluation(self) -> None:
        """Cache test-set features once and split them for model selection."""
        self.model.grounder.eval()
        self.test_features = extract_test_features(self.model.grounder, self.test_set,
                                                   self.device, limit=self.config.eval_limit)
        if self.config.selection == 'val':
            self.selection_indices, self.report_indices = split_for_selection(
                self.test_features, self.config.val_fraction, self.config.seed)
        else:
            everything = list(range(len(self.test_features)))
            self.selection_indices, self.report_indices = everything, everything
        self.model.eval()
        initial = evaluate_features(self.model.grounder, self.test_features, self.report_indices)
        self.model.train()
        self.before_training = summaries_to_dict(initial)
        if self.progress.global_step == 0:  # a resumed run keeps its first record
            self.log.write({'event': 'before_training', 'metrics': {
                name: summary.mean for name, summary in initial.items()}})

    def evaluate_epoch(self, epoch: int) -> None:
        """Score the selection split, keep the best model, log the metrics."""
        self.model.eval()
        summaries = evaluate_features(self.model.grounder, self.test_features,
                                      self.selection_indices)
        self.model.train()
        score = summaries[self.config.calibration].mean['kld']
        improved = score < self.progress.best_score
        if improved:
            self.progress.best_score, self.progress.best_epoch = score, epoch
            self.save_best({name: s.mean for name, s in summaries.items()})
        self.log.write({'event': 'epoch', 'epoch': epoch, 'selection': self.config.selection,
                        'metrics': {name: s.mean for name, s in summaries.items()},
                        'improved': improved})
        tqdm.write(f'epoch {epoch} ({self.config.selection} split)\n{format_table(summaries)}')

    def final_report(self) -> Dict[str, Any]:
        """Evaluate ``best.pt`` on the report split; write metrics JSON and a contact sheet."""
        from affordance_grounding.model.checkpoint import load_grounder

        best = load_grounder(str(self.out_dir / 'best.pt'), device=str(self.device))
        summaries = evaluate_features(best, self.test_features, self.report_indices)
        report = {'best_epoch': self.progress.best_epoch, 'selection': self.config.selection,
                  'report_images': len(self.report_indices),
                  'maps': summaries_to_dict(summaries),
                  'before_training': self.before_training}
        write_json(self.out_dir / 'metrics.json', report)
        write_contact_sheet(self.out_dir / 'contact_sheet.png', best, self.test_features,
                            self.report_indices[:8])
        tqdm.write(f'best epoch {self.progress.best_epoch}, report split:\n'
                   f'{format_table(summaries)}')
        return report

    def fit(self, stop_after_steps: int = 0) -> Optional[Dict[str, Any]]:
        """Train to the end (or until ``stop_after_steps``); returns the final report.

        Raises:
            TrainingInterrupted: After SIGINT/SIGTERM, once ``last.pt`` is saved.
        """
        with self.stop_on_signals():
            if self.context.is_main:
                self.prepare_evaluation()
            while self.progress.epoch < self.config.epochs:
                self.stop_if_requested()
                if not self.train_epoch(self.progress.epoch, stop_after_steps):
                    return None
                if self.context.is_main:
                    self.evaluate_epoch(self.progress.epoch)
                barrier(self.context)
                self.progress.epoch += 1
                self.progress.step_in_epoch = 0
                self.save_last()
            self.progress.finished = True
            self.save_last()
            return self.final_report() if self.context.is_main else None
