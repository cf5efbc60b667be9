"""The training loop: one epoch of steps, validation on the EMA model, checkpoints, metrics and plots.

Per step: forward under autocast (bf16, or fp16 with a GradScaler, chosen by device), the criterion in fp32,
backward (gradient accumulation over ``accumulate`` batches), unscale, clip, one host transfer of the loss and
gradient norm (NaN/inf guard and progress), optimizer step, per-iteration lr schedule, EMA update.
Multi-scale batches resize the collated uint8 batch with nearest interpolation (docs/rt-detr.md §6.4) until the stop
epoch.
Each epoch ends with COCO mAP of the EMA model on the val split, ``last.pt`` (and ``best.pt`` on a new best
AP), a ``metrics.csv`` row, plots and TensorBoard scalars. A resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from detkit.config.train import TrainConfig
from detkit.data.classmap import ClassMap
from detkit.data.dataset import DatasetSpec
from detkit.data.loader import DetectionDataset, EpochLoader, sample_seed
from detkit.engine.checkpointing import capture_rng, restore_rng
from detkit.engine.ema import ModelEMA
from detkit.engine.optim import build_optimizer
from detkit.engine.schedule import build_scheduler
from detkit.errors import DetkitError
from detkit.inference.torch_detector import TorchDetector
from detkit.models.family import total_loss
from detkit.utils import distributed
from detkit.utils.atomic import atomic_path, atomic_write_json, atomic_write_text
from detkit.utils.optional import optional_import
from detkit.utils.progress import ProgressTask


# ------------------------------------------------------------------------------------------- AMP
@dataclass(frozen=True)
class AmpPolicy:
    enabled: bool
    dtype: torch.dtype
    use_scaler: bool

    def describe(self) -> str:
        if not self.enabled:
            return "fp32"
        return "fp16 + GradScaler" if self.use_scaler else "bf16"


def amp_policy(device: torch.device, cfg: TrainConfig) -> AmpPolicy:
    """bf16 where the device supports it (CPU, Ampere+ GPUs), else fp16 with a GradScaler."""
    if not cfg.amp:
        return AmpPolicy(False, torch.float32, False)
    want = cfg.amp_dtype
    if want == "auto":
        bf16_ok = device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_bf16_supported())
        want = "bf16" if bf16_ok else "fp16"
    if want == "bf16":
        return AmpPolicy(True, torch.bfloat16, False)
    return AmpPolicy(True, torch.float16, device.type == "cuda")


# ------------------------------------------------------------------------------------------- helpers
def multiscale_size(cfg: TrainConfig, epoch: int, batch_index: int) -> int | None:
    """The square size of this batch (seeded by epoch and batch index), or None for the native size."""
    scales = cfg.scales()
    stop = cfg.epoch_point(cfg.multiscale_stop_epoch)
    if not scales or (stop is not None and epoch >= stop):
        return None
    return random.Random(sample_seed(cfg.seed, epoch, batch_index, 7)).choice(scales)


def prepare_images(images: torch.Tensor, device: torch.device, size: int | None) -> torch.Tensor:
    """uint8 batch -> float [0, 1] on the device, resized with nearest interpolation when multi-scale."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="nearest")
    return x


def targets_to(targets: list[dict[str, torch.Tensor]], device: torch.device) -> list[dict[str, torch.Tensor]]:
    return [
        {"labels": t["labels"].to(device, non_blocking=True), "boxes": t["boxes"].to(device, non_blocking=True)}
        for t in targets
    ]


@dataclass
class EpochStats:
    partial: bool = False
    loss: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    images: int = 0
    seconds: float = 0.0


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_ap: float | None
    best_epoch: int | None
    stopped: str
    history: list[dict[str, Any]]
    amp: str
    device: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "epochs_done": self.epochs_done,
            "best_ap": self.best_ap,
            "best_epoch": self.best_epoch,
            "stopped": self.stopped,
            "amp": self.amp,
            "device": self.device,
            "best_checkpoint": str(self.run_dir / "checkpoints" / "best.pt"),
            "last_checkpoint": str(self.run_dir / "checkpoints" / "last.pt"),
            "final": self.history[-1] if self.history else None,
        }


class TrainingDiverged(DetkitError):
    pass


# ------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Holds the training state of one run; ``fit()`` runs the remaining epochs.

    ``model`` is a detector of ``recipe.family`` honouring the training contract (``forward(images, targets)``);
    the family gives the criterion and its loss groups; the trainer owns device placement, DDP wrapping,
    optimiser, schedule, EMA and AMP.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        recipe: Any,
        dataset: DatasetSpec,
        run_dir: Path,
        device: torch.device,
        class_map: ClassMap | None = None,
        dist_info: distributed.DistInfo | None = None,
        run_info: dict[str, Any] | None = None,
    ):
        self.recipe = recipe
        self.cfg: TrainConfig = recipe.train
        self.dataset = dataset
        self.class_map = class_map or dataset.class_map
        self.run_dir = Path(run_dir)
        self.device = device
        self.dist = dist_info or distributed.DistInfo()
        self.run_info = dict(run_info or {})  # extra summary.json entries (the run's dataset record)
        cfg = self.cfg
        if cfg.batch % self.dist.world_size:
            raise DetkitError(
                f"train.batch {cfg.batch} is not divisible by the {self.dist.world_size} processes",
                hint="choose a multiple of the process count",
            )
        self.amp = amp_policy(device, cfg)

        train_split = dataset.split("train")
        val_split = dataset.split("val")
        self.val_split = val_split
        augment = getattr(recipe, "augment", None)
        self.train_set = DetectionDataset(
            train_split, self.class_map, cfg.imgsz, augment, train=True, total_epochs=cfg.epochs, seed=cfg.seed
        )
        per_rank = cfg.batch // self.dist.world_size
        self.loader = EpochLoader(
            self.train_set,
            per_rank,
            shuffle=True,
            workers=cfg.workers,
            drop_last=len(self.train_set) >= cfg.batch,
            seed=cfg.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
        )
        if len(self.loader) == 0:
            raise DetkitError(
                f"the train split has {len(self.train_set)} images, fewer than one batch per process",
                hint="lower the batch size",
                params="batch",
            )
        self.steps_per_epoch = math.ceil(len(self.loader) / cfg.accumulate)
        self.total_steps = self.steps_per_epoch * cfg.epochs

        self.base_model = model.to(device)
        self.ema = ModelEMA(self.base_model, cfg.ema_decay, cfg.ema_warmups) if cfg.ema else None
        sync_bn = cfg.sync_bn and device.type == "cuda"  # SyncBatchNorm needs a GPU process group
        self.model = distributed.wrap_ddp(self.base_model, device, sync_bn, cfg.find_unused_parameters)
        self.criterion = recipe.family.build_criterion(recipe.loss, len(self.class_map))
        self.loss_groups = recipe.family.loss_groups(recipe.loss)
        self.optimizer = build_optimizer(self.base_model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.total_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp.use_scaler)
        self.epoch = 0
        self.step = 0
        self.best_ap: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        self._tb: Any = None  # the TensorBoard SummaryWriter once opened; False without the tensorboard package
        self._batch_bar: ProgressTask | None = None
        self._deadline: float | None = None  # wall-clock end of training under train.time_limit_minutes
        self._out_of_time = False  # set by each optimizer step, agreed across processes

    # ---- checkpoints -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The training fields of a checkpoint (the EMA update count equals ``step``: one update per step)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "rng": capture_rng(),
        }

    def load_state(
        self, model: dict, ema: dict | None, training: dict[str, Any], history: list[dict[str, Any]]
    ) -> None:
        """Restore a checkpoint written by :meth:`save` plus the run's per-epoch history (exact resume)."""
        self.base_model.load_state_dict(model)
        self.epoch = int(training["epoch"])
        self.step = int(training["step"])
        if self.ema is not None:
            if ema is None:
                raise DetkitError("checkpoint has no EMA weights but the recipe trains with train.ema=true")
            self.ema.load_state_dict(ema, self.step)
        self.optimizer.load_state_dict(training["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        if training.get("scaler"):
            self.scaler.load_state_dict(training["scaler"])
        self.history = history[: self.epoch]
        for i, row in enumerate(self.history):
            ap = row.get("AP")
            if ap is not None and (self.best_ap is None or ap > self.best_ap):
                self.best_ap, self.best_epoch, self.bad_epochs = ap, i, 0
            else:
                self.bad_epochs += 1
        restore_rng(training["rng"])

    def save(self, name: str, training: bool = True) -> Path:
        """``last.pt`` carries the full training state; ``best.pt`` (``training=False``) only the weights."""
        from detkit.models.checkpoint import save_checkpoint

        state = self.state() if training else {}  # collective under DDP (RNG gather): every rank calls save
        path = self.run_dir / "checkpoints" / name
        if self.dist.is_main:
            save_checkpoint(
                path,
                model=self.base_model.state_dict(),
                ema=self.ema.state_dict() if self.ema else None,
                recipe=_recipe_dict(self.recipe),
                class_map=self.class_map,
                **state,
            )
        return path

    # ---- one step ----------------------------------------------------------------------------------------
    def forward_loss(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=self.device.type, dtype=self.amp.dtype, enabled=self.amp.enabled):
            outputs = self.model(images, targets)
        return self.criterion(outputs, targets)

    def _optimizer_step(self, loss_parts: torch.Tensor, batch: tuple) -> list[float]:
        """Unscale, clip, guard against non-finite values, step; returns the host copy of the losses."""
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = self.cfg.clip_grad_norm if self.cfg.clip_grad_norm is not None else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        values = torch.cat(
            [loss_parts.detach().float(), norm.detach().float().reshape(1)]
        ).tolist()  # the step's one sync
        late = self._deadline is not None and time.perf_counter() > self._deadline
        # agreed by every process in one all-reduce, so all stop (or go on) together
        bad, self._out_of_time = distributed.any_flags([not math.isfinite(values[0]), late], self.device)
        if not self.amp.use_scaler:  # with a scaler, inf gradients are expected and skipped by it
            bad = bad or not math.isfinite(values[-1])
        if bad and self.cfg.nan_guard:
            self._diverged(values, batch)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.base_model)
        self.step += 1
        return values

    def _diverged(self, values: list[float], batch: tuple) -> None:
        images, targets = batch
        path = self.run_dir / f"nonfinite_batch_rank{self.dist.rank}.pt"
        with atomic_path(path) as tmp:
            torch.save(
                {
                    "images": images.cpu(),
                    "targets": [{k: v.cpu() for k, v in t.items()} for t in targets],
                    "epoch": self.epoch,
                    "step": self.step,
                    "loss": values[0],
                    "grad_norm": values[-1],
                },
                tmp,
            )
        raise TrainingDiverged(
            f"training stopped: non-finite loss or gradient (loss {values[0]}, grad norm {values[-1]}) "
            f"at epoch {self.epoch}, step {self.step}; "
            f"the weights were not updated, the batch is saved to {path}",
            hint=(
                "lower train.lr, keep train.clip_grad_norm, try train.amp=false, and inspect the saved batch; "
                "resume from checkpoints/last.pt"
            ),
            path=path,
        )

    def train_one_epoch(self) -> EpochStats:
        cfg = self.cfg
        self.model.train()
        self.loader.set_epoch(self.epoch)
        stats = EpochStats()
        sums = None
        n_steps = 0
        if self._batch_bar is None:
            self._batch_bar = ProgressTask("batches", total=len(self.loader))
        bar = self._batch_bar
        bar.reset(total=len(self.loader), description=f"epoch {self.epoch + 1}/{cfg.epochs}")
        t0 = time.perf_counter()
        pending = None
        info = ""
        for i, (images, targets) in enumerate(self.loader):
            size = multiscale_size(cfg, self.epoch, i)
            x = prepare_images(images, self.device, size)
            tg = targets_to(targets, self.device)
            last_micro = (i + 1) % cfg.accumulate == 0 or i + 1 == len(self.loader)
            sync_ctx = self.model.no_sync() if (self.dist.enabled and not last_micro) else _null()
            with sync_ctx:
                losses = self.forward_loss(x, tg)
                total = total_loss(losses)
                self.scaler.scale(total / cfg.accumulate).backward()
            parts = torch.stack(
                [total] + [sum(v for k, v in losses.items() if k.startswith(g)) for g in self.loss_groups]
            )
            pending = parts.detach() if pending is None else pending + parts.detach()
            stats.images += images.shape[0]
            if last_micro:
                values = self._optimizer_step(pending / max(1, (i % cfg.accumulate) + 1), (images, targets))
                pending = None
                sums = values[:-1] if sums is None else [a + b for a, b in zip(sums, values[:-1])]
                n_steps += 1
                rate = stats.images * self.dist.world_size / max(1e-9, time.perf_counter() - t0)
                info = f"loss {values[0]:.3f}  {rate:.1f} img/s  lr {self.optimizer.param_groups[-1]['lr']:.2e}"
                if self._out_of_time:
                    stats.partial = True  # the wall-time limit ends the run inside this epoch
                    bar.advance(1, info=info)
                    break
            bar.advance(1, info=info)
        stats.seconds = time.perf_counter() - t0
        if sums is not None:
            stats.loss = sums[0] / n_steps
            stats.parts = {g: s / n_steps for g, s in zip(self.loss_groups, sums[1:])}
        return stats

    # ---- validation ---------------------------------------------------------------------------------------
    def validate(self) -> dict[str, Any]:
        from detkit.evaluation.coco_metrics import evaluate_coco
        from detkit.evaluation.inference import predict_split

        module = self.ema.module if self.ema is not None else self.base_model
        was_training = module.training
        module.eval()
        try:
            detector = TorchDetector(
                module, self.class_map, (self.cfg.imgsz, self.cfg.imgsz), self.device, recipe=_recipe_dict(self.recipe)
            )
            with torch.no_grad():
                dets = predict_split(detector, self.val_split, batch_size=self.cfg.val_batch)
            return evaluate_coco(self.val_split.annotations, dets, self.class_map)
        finally:
            module.train(was_training)

    # ---- the run ------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        try:
            return self._fit()
        finally:
            if self._tb:  # also when training stops with an error: the event file keeps what was logged
                self._tb.close()

    def _fit(self) -> TrainResult:
        cfg = self.cfg
        epochs_bar = ProgressTask("epochs", total=cfg.epochs)
        epochs_bar.advance(self.epoch)
        stopped = "completed"
        start, start_epoch = time.perf_counter(), self.epoch
        prior_minutes = (self.history[-1].get("wall_minutes") or 0.0) if self.history else 0.0
        val_seconds = 0.0
        if self.dist.is_main:
            self._open_tensorboard()  # says at the start, not after an epoch, when TensorBoard is unavailable
        while self.epoch < cfg.epochs:
            if cfg.time_limit_minutes is not None:
                # stop training in time to validate and save before the limit (the last epoch may be partial)
                self._deadline = start + (cfg.time_limit_minutes - prior_minutes) * 60 - 1.5 * val_seconds
                if self.epoch > start_epoch:
                    elapsed = (time.perf_counter() - start) / 60
                    per_epoch = elapsed / (self.epoch - start_epoch)
                    if distributed.broadcast_object(prior_minutes + elapsed + per_epoch / 4 > cfg.time_limit_minutes):
                        stopped = "time_limit"
                        break
            stats = self.train_one_epoch()
            t_val = time.perf_counter()
            metrics = self.validate() if self.dist.is_main else {}
            val_seconds = time.perf_counter() - t_val
            ap, ap50, ap75 = distributed.broadcast_object([_num(metrics.get(k)) for k in ("AP", "AP50", "AP75")])
            improved = ap is not None and (self.best_ap is None or ap > self.best_ap)
            if improved:
                self.best_ap, self.best_epoch, self.bad_epochs = ap, self.epoch, 0
            else:
                self.bad_epochs += 1
            row = {
                "epoch": self.epoch + 1,
                "step": self.step,
                "lr": self.optimizer.param_groups[-1]["lr"],
                "train_loss": stats.loss,
                **{k: v for k, v in stats.parts.items()},
                "AP": ap,
                "AP50": ap50,
                "AP75": ap75,
                "img_per_s": stats.images * self.dist.world_size / max(stats.seconds, 1e-9),
                "epoch_seconds": stats.seconds,
                "wall_minutes": prior_minutes + (time.perf_counter() - start) / 60,
            }
            self.history.append(row)
            self.epoch += 1
            if self.dist.is_main:  # metrics first: a resume keeps the rows of the epochs its checkpoint holds
                self.write_reports()
            self.save("last.pt")
            if improved:
                self.save("best.pt", training=False)
            epochs_bar.advance(1, info=f"AP {ap if ap is not None else float('nan'):.3f}  best {self.best_ap or 0:.3f}")
            if stats.partial:
                stopped = "time_limit"
                break
            if (
                cfg.early_stop_patience is not None
                and self.bad_epochs >= cfg.early_stop_patience
                and self.epoch < cfg.epochs
            ):
                stopped = "early_stop"
                break
        epochs_bar.close()
        if self._batch_bar is not None:
            self._batch_bar.close()
        if self.dist.is_main:
            self.write_reports(stopped)
        return TrainResult(
            self.run_dir,
            self.epoch,
            self.best_ap,
            None if self.best_epoch is None else self.best_epoch + 1,
            stopped,
            self.history,
            self.amp.describe(),
            str(self.device),
        )

    # ---- reports ------------------------------------------------------------------------------------------
    def write_reports(self, stopped: str | None = None) -> None:
        """metrics.csv and summary.json; plots and TensorBoard scalars after each epoch (not again at the end)."""
        if not self.history:
            return
        buf = io.StringIO()
        fields = list(self.history[0].keys())
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
        atomic_write_text(self.run_dir / "metrics.csv", buf.getvalue())
        summary = {
            "epochs_done": self.epoch,
            "epochs": self.cfg.epochs,
            "steps": self.step,
            "best_ap": self.best_ap,
            "best_epoch": None if self.best_epoch is None else self.best_epoch + 1,
            "final": self.history[-1],
            "stopped": stopped or "running",
            "amp": self.amp.describe(),
            "device": str(self.device),
            "world_size": self.dist.world_size,
            "classes": self.class_map.to_dict(),
            **self.run_info,
        }
        atomic_write_json(self.run_dir / "summary.json", _finite(summary))
        if stopped is None:
            plot_history(self.history, self.run_dir / "plots", self.loss_groups)
            self._tensorboard(self.history[-1])

    def _open_tensorboard(self) -> None:
        """A SummaryWriter under ``tensorboard/`` when the optional package is installed (one info line if not)."""
        if self._tb is None:
            tb = optional_import("torch.utils.tensorboard", "tensorboard", "no TensorBoard logs")
            self._tb = False if tb is None else tb.SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def _tensorboard(self, row: dict[str, Any]) -> None:
        self._open_tensorboard()
        if self._tb:
            for k, v in row.items():
                if k not in ("epoch", "step") and isinstance(v, (int, float)) and v is not None:
                    self._tb.add_scalar(k, v, row["epoch"])
            self._tb.flush()


def read_history(path: Path) -> list[dict[str, Any]]:
    """Rows of a run's ``metrics.csv`` with numbers parsed back (floats round-trip exactly through repr)."""
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append(
                {k: (None if v == "" else int(v) if k in ("epoch", "step") else float(v)) for k, v in row.items()}
            )
    return rows


def plot_history(history: list[dict[str, Any]], out: Path, loss_groups: tuple[str, ...] = ()) -> None:
    """``losses.png`` (total and per-group train loss) and ``map.png`` (val AP, AP50, AP75) per epoch."""
    from detkit.utils.figures import new_figure, save_figure

    epochs = [r["epoch"] for r in history]
    curves = (
        ("losses.png", ["train_loss", *loss_groups], "loss", "Training loss per epoch"),
        ("map.png", ["AP", "AP50", "AP75"], "val mAP (EMA)", "Validation mAP per epoch (EMA weights)"),
    )
    for name, keys, ylabel, title in curves:
        fig = new_figure(6, 4)
        ax = fig.add_subplot()
        for k in keys:
            ys = [r.get(k) for r in history]
            if any(y is not None for y in ys):
                ax.plot(epochs, [float("nan") if y is None else y for y in ys], marker="o", label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
        save_figure(fig, out / name)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _recipe_dict(recipe: Any) -> dict[str, Any]:
    return recipe.model_dump(mode="json") if hasattr(recipe, "model_dump") else dict(recipe)
