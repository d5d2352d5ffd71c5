"""The training loop shared by ``kdlic train`` and ``kdlic distill``.

Resumable exactly: a checkpoint holds the step, model (raw and averaged), both
optimizers, the plateau state and the torch RNG (quantisation noise); batches depend only on
(seed, step) (:mod:`kdlic.data.sampling`). Checkpoints are written atomically to
``last.pt`` every few minutes and at the end, and to ``best.pt`` when the
validation RD loss improves; a run killed at any moment resumes from ``last.pt``.
Metrics go to ``metrics.jsonl`` (one JSON object per line, ``split`` = train/val).
"""

from __future__ import annotations

import copy
import fcntl
import itertools
import json
import logging
import math
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import torch
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from kdlic.data.images import find_images
from kdlic.data.sampling import CropSource, StepBatches, split_train_val, validation_crops
from kdlic.data.user import UserData, user_batches
from kdlic.errors import KdlicError
from kdlic.models import adopt, build_model
from kdlic.models.latents import set_quantization, set_transform_dtype
from kdlic.training.distributed import Dist, all_reduce_mean, init_distributed, resolve_device
from kdlic.training.losses import Objective, psnr_from_mse
from kdlic.utils.checkpoint import read_checkpoint, save_checkpoint
from kdlic.utils.device import host_info, parse_device, resolve_bf16
from kdlic.utils.files import atomic_write, jsonable
from kdlic.utils.progress import progress_bar, write

log = logging.getLogger(__name__)


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(main, aux): the entropy bottleneck's quantiles get their own optimizer."""
    main, aux = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (aux if name.endswith(".quantiles") else main).append(p)
    return main, aux


def init_model(model_cfg: dict[str, Any], seed: int) -> nn.Module:
    """A fresh model as ``model_cfg`` describes, initialised from ``seed`` (reproducible)."""
    torch.manual_seed(seed)
    return build_model(**model_cfg)


def load_data(cfg: dict[str, Any]) -> tuple[CropSource, Tensor]:
    """Training crop source and the fixed validation crops (n, 3, val_crop, val_crop)."""
    data = cfg["data"]
    folders = [data["train"]] if isinstance(data["train"], str) else data["train"]
    train_files = sorted(f for folder in folders for f in find_images(folder, "train"))
    if data["val"]:
        val_files = find_images(data["val"], "test")
    else:
        train_files, val_files = split_train_val(train_files, data["val_count"])
    if not val_files:
        raise KdlicError("no validation images: set data.val or data.val_count > 0")
    train = CropSource(train_files, data["crop"], data["cache_mb"], data["downscale"])
    val = validation_crops(CropSource(val_files, data["val_crop"], cache_mb=0))
    log.info("data: %d training images, %d validation crops", len(train_files), len(val))
    return train, val


def _log_step(line: str) -> int | None:
    """The step of one metrics.jsonl record, None if the line is not a whole record."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


class Plateau:
    """Halve the lr (``factor``) after ``patience`` validations without a new best.

    ``patience`` None disables it. Kept apart from the warm-up and decay, which
    :meth:`Trainer.learning_rate` multiplies in.
    """

    def __init__(self, patience: int | None, factor: float) -> None:
        self.patience, self.factor = patience, factor
        self.scale, self.best, self.bad = 1.0, math.inf, 0

    def update(self, value: float) -> None:
        if value < self.best:
            self.best, self.bad = value, 0
        elif self.patience is not None:
            self.bad += 1
            if self.bad > self.patience:
                self.scale, self.bad = self.scale * self.factor, 0

    def state_dict(self) -> dict[str, float]:
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.scale, self.best, self.bad = state["scale"], state["best"], int(state["bad"])


def lock_run_dir(run_dir: Path) -> IO[Any]:
    """An exclusive lock on ``run_dir`` (created if missing) for as long as the returned
    file stays open; the system drops it when the process dies, so a crash leaves none.

    Raises:
        KdlicError: another process holds it (two trainers would interleave the log and
            the checkpoints).
    """
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        f = open(run_dir / ".lock", "w")  # noqa: SIM115 - held for the trainer's life
    except OSError as exc:
        raise KdlicError(f"cannot use run directory {run_dir}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise KdlicError(f"{run_dir} is in use by another trainer; wait for it to finish "
                         "or choose another --run-dir") from None
    return f


def setattr_state(module: nn.Module, name: str, value: Tensor) -> None:
    """Replace the parameter or buffer ``name`` (dotted) of ``module`` by ``value``."""
    *path, leaf = name.split(".")
    owner = module.get_submodule(".".join(path))
    if leaf in owner._parameters:
        owner._parameters[leaf] = nn.Parameter(value, requires_grad=False)
    else:
        owner._buffers[leaf] = value


class Trainer:
    """Optimises ``objective`` for ``model`` as the config's schedule says.

    Args:
        cfg: resolved config (see :data:`kdlic.training.config.TRAIN_DEFAULTS`).
        model: the model to train (its architecture is stored in checkpoints).
        objective: computes the loss terms, see :class:`kdlic.training.losses.Objective`.
        kind: "train" or "distill", recorded in checkpoints.
        resume: continue from ``run_dir/last.pt``.
        wrap_source: optional function that replaces the training crop source (e.g.
            with one whose crops carry cached teacher outputs).
        data: a user's ``Dataset`` or ``DataLoader`` of images instead of the config's
            folders (:mod:`kdlic.data.user`); ``val_data`` its validation images.
        meta: more facts for every checkpoint's ``meta`` (e.g. which teachers, at which
            step, a student learnt from).
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        model: nn.Module,
        objective: Objective,
        kind: str = "train",
        resume: bool = False,
        wrap_source: Callable[[CropSource], CropSource] | None = None,
        data: UserData | None = None,
        val_data: Any = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.extra_meta = meta or {}
        self.data, self.val_data = data, val_data
        self.kind = kind
        self.wrap_source = wrap_source
        rt = cfg["runtime"]
        parse_device(rt["device"])  # a bad name is a one-line error, before any set-up
        self.ddp: Dist = init_distributed(rt["device"])
        self.device = resolve_device(rt["device"], self.ddp)
        if rt["threads"]:
            torch.set_num_threads(rt["threads"])
        torch.manual_seed(rt["seed"] + self.ddp.rank)
        self.run_dir = Path(cfg["run_dir"]).expanduser()
        self._lock = lock_run_dir(self.run_dir) if self.ddp.is_main else None
        if not resume and (self.run_dir / "last.pt").exists():
            raise KdlicError(f"{self.run_dir} already holds a run (last.pt): continue it "
                             "with --resume, or choose another --run-dir")
        self.model = adopt(model).to(self.device)
        if rt["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        bf16 = resolve_bf16(rt["bf16"], self.device)
        if rt["bf16"] == "auto":
            log.info("bf16 transforms: %s (auto: %s)", "on" if bf16 else "off",
                     "native on this device" if bf16 else "no native bf16 kernels here")
        set_transform_dtype(self.model, torch.bfloat16 if bf16 else None)
        # Where this segment of the run trains (a resumed run may move between machines):
        # step times and learning curves mean little without it.
        self.machine = {**host_info(), "device": str(self.device), "bf16": bf16,
                        "threads": torch.get_num_threads(), "processes": self.ddp.world_size}
        self.objective = objective
        main, aux = split_parameters(self.model)
        self.main_params = main
        self.optimizer = torch.optim.Adam(main, lr=cfg["optim"]["lr"])
        # None where the quantiles are frozen (a decoder-only student's entropy models)
        self.aux_optimizer = torch.optim.Adam(aux, lr=cfg["optim"]["aux_lr"]) if aux else None
        set_quantization(self.model, cfg["quantization"])
        # The averaged weights (optim.ema): what validation, best.pt and exports see.
        self.ema: nn.Module | None = None
        if cfg["optim"]["ema"]:
            self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.plateau = Plateau(cfg["optim"]["plateau_patience"], cfg["optim"]["plateau_factor"])
        self.step = 0
        self.best_rd = math.inf
        self.elapsed_s = 0.0  # training wall-clock over all resumes, up to _segment_start
        self._segment_start: float | None = None  # monotonic time the current fit() began
        self.last_val: dict[str, float] = {}
        if resume:
            self._resume()
        self.train_model: nn.Module = self.model
        if self.ddp.enabled:
            # The quantiles are trained by the aux loss outside the DDP forward; their
            # gradients are averaged by hand (all_reduce_mean) after aux backward.
            quantiles = [n for n, _ in self.model.named_parameters() if n.endswith(".quantiles")]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                self.model, quantiles
            )
            self.train_model = DistributedDataParallel(self.model)
        self._stop_signal: int | None = None

    # -- checkpoints -------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "lmbda": self.cfg["lmbda"],
            "step": self.step,
            "elapsed_s": round(self._elapsed(), 3),  # ms: short resumes must still add up
            "machine": self.machine,
            "config": self.cfg,
            "metrics": {"val": self.last_val, "best_val_rd_loss": self.best_rd},
            **self.extra_meta,
        }

    def _elapsed(self) -> float:
        """Training wall-clock so far, over all resumes (best.pt records it too)."""
        running = 0.0 if self._segment_start is None else time.monotonic() - self._segment_start
        return self.elapsed_s + running

    def _train_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "best_rd": self.best_rd,
            "elapsed_s": self._elapsed(),
            "last_val": self.last_val,
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": None if self.aux_optimizer is None
            else self.aux_optimizer.state_dict(),
            "plateau": self.plateau.state_dict(),
            # With EMA the checkpoint's weights are the average; the raw ones are here.
            "raw_model": None if self.ema is None else self.model.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device)
            if self.device.type == "cuda" else None,
        }

    @property
    def eval_model(self) -> nn.Module:
        """The weights to validate and ship: the EMA copy if there is one."""
        return self.model if self.ema is None else self.ema

    def save(self, name: str) -> None:
        if self.ddp.is_main:
            save_checkpoint(self.run_dir / name, self.eval_model, self._meta(),
                            self._train_state())

    def save_snapshot(self) -> None:
        """The eval weights at this step, fp16 without training state (as the zoo ships
        them), to ``run_dir/snapshots/step-NNNNNNN.pt``."""
        if self.ddp.is_main:
            save_checkpoint(self.run_dir / "snapshots" / f"step-{self.step:07d}.pt",
                            self.eval_model, self._meta(), half=True)

    def _resume(self) -> None:
        path = self.run_dir / "last.pt"
        # Temporary files of a checkpoint write cut short by a kill (atomic_open's
        # names); no one else writes here while we hold the lock.
        for stale in self.run_dir.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        ckpt = read_checkpoint(path)
        if "train_state" not in ckpt:
            raise KdlicError(f"{path} has no training state to resume from")
        if ckpt["arch"] != self.model.arch or ckpt["arch_args"] != self.model.arch_args:
            raise KdlicError(
                f"{path} holds {ckpt['arch']}{ckpt['arch_args']}, but this run builds "
                f"{self.model.arch}{self.model.arch_args}"
            )
        st = ckpt["train_state"]
        if (st.get("raw_model") is None) != (self.ema is None):
            raise KdlicError(f"{path} was written with optim.ema "
                             f"{'off' if st.get('raw_model') is None else 'on'}; resume it so")
        self.eval_model.load_state_dict(ckpt["state_dict"])
        if self.ema is not None:
            self.model.load_state_dict(st["raw_model"])
        self.optimizer.load_state_dict(st["optimizer"])
        if self.aux_optimizer is not None:
            self.aux_optimizer.load_state_dict(st["aux_optimizer"])
        self.plateau.load_state_dict(st["plateau"])
        torch.set_rng_state(st["torch_rng"])
        if self.device.type == "cuda" and st.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(st["cuda_rng"], self.device)
        self.step, self.best_rd = st["step"], st["best_rd"]
        self.elapsed_s, self.last_val = st["elapsed_s"], st["last_val"]
        # the run's warm start was recorded when it began (its init is not reloaded)
        if "warm_start" in ckpt["meta"]:
            self.extra_meta.setdefault("warm_start", ckpt["meta"]["warm_start"])
        log.info("resumed %s at step %d", path, self.step)

    # -- logging -----------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if not self.ddp.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(jsonable(record)) + "\n")

    def _prepare_run_dir(self) -> None:
        if not self.ddp.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.run_dir / "config.yaml",
                     lambda f: yaml.safe_dump(self.cfg, f, sort_keys=False), mode="w")
        log_path = self.run_dir / "metrics.jsonl"
        if log_path.exists():
            # Drop records past the resumed step (they will be redone) and a last line
            # cut short by a kill.
            kept = [line for line in log_path.read_text().splitlines()
                    if _log_step(line) is not None and _log_step(line) <= self.step]
            atomic_write(log_path, lambda f: f.writelines(line + "\n" for line in kept), "w")

    # -- the loop ----------------------------------------------------------------------
    def train_step(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One optimisation step on ``batch`` (``x``: (B, 3, H, W)); returns its terms."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step)
        terms = self.objective(self.train_model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.main_params, self.cfg["optim"]["clip_grad"])
        self.optimizer.step()
        if self.aux_optimizer is None:
            with torch.no_grad():
                aux_loss = self.model.aux_loss()
        else:
            self.aux_optimizer.zero_grad(set_to_none=True)
            aux_loss = self.model.aux_loss()
            aux_loss.backward()
            all_reduce_mean([p.grad for g in self.aux_optimizer.param_groups
                             for p in g["params"]], self.ddp)
            self.aux_optimizer.step()
        if self.ema is not None:
            self._update_ema()
        values = torch.stack([v.detach().float() for v in (*terms.values(), aux_loss)])
        all_reduce_mean([values], self.ddp)  # log the global batch's terms, not this shard's
        return dict(zip([*terms, "aux_loss"], values.tolist(), strict=True))

    def learning_rate(self, step: int) -> float:
        """The main optimizer's lr at ``step``: warm-up, plateau halvings, final decay."""
        opt, total = self.cfg["optim"], self.cfg["schedule"]["steps"]
        lr = opt["lr"] * self.plateau.scale
        if step < opt["warmup_steps"]:
            lr *= (step + 1) / opt["warmup_steps"]
        into_decay = step - (total - opt["decay_steps"])
        if opt["decay_steps"] and into_decay >= 0:
            cosine = 0.5 * (1 + math.cos(math.pi * into_decay / opt["decay_steps"]))
            lr = opt["min_lr"] + (lr - opt["min_lr"]) * cosine
        return max(lr, opt["min_lr"])

    @torch.no_grad()
    def _update_ema(self) -> None:
        # The usual bias-free start: the average forgets its initial weights as fast as
        # a (1 + n) / (10 + n) decay allows, then settles at optim.ema.
        decay = min(self.cfg["optim"]["ema"], (1 + self.step) / (10 + self.step))
        ema, raw = self.ema.state_dict(), self.model.state_dict()
        for name, value in raw.items():
            if value.is_floating_point() and ema[name].shape == value.shape:
                ema[name].lerp_(value, 1 - decay)
            else:  # integer buffers, or entropy tables resized by update()
                setattr_state(self.ema, name, value.clone())

    @torch.no_grad()
    def validate(self, val: Tensor) -> dict[str, float]:
        """Mean terms over the validation crops, eval weights in eval mode (rounding)."""
        model = self.eval_model
        model.eval()
        sums: dict[str, float] = defaultdict(float)
        bs = self.cfg["data"]["batch_size"]
        for i in range(0, len(val), bs):
            x = val[i : i + bs].to(self.device)
            for k, v in self.objective(model, {"x": x}).items():
                sums[k] += float(v) * len(x)
        means = {k: v / len(val) for k, v in sums.items()}
        means["psnr"] = psnr_from_mse(means["mse"])
        return means

    def _should_stop(self) -> bool:
        minutes = self.cfg["schedule"]["minutes"]
        over_budget = minutes is not None and self._elapsed() >= minutes * 60
        flag = torch.tensor([float(over_budget or self._stop_signal is not None)])
        all_reduce_mean([flag], self.ddp)  # every rank stops at the same step
        return bool(flag.item() > 0)

    def fit(self) -> dict[str, float]:
        """Train until ``schedule.steps`` or ``schedule.minutes``; returns the last validation.

        The run directory's lock (taken when the trainer was made) is released at the end.
        """
        try:
            return self._fit()
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def _fit(self) -> dict[str, float]:
        sched, data_cfg = self.cfg["schedule"], self.cfg["data"]
        if self.data is None:
            source, val = load_data(self.cfg)
            if self.wrap_source is not None:
                source = self.wrap_source(source)
            batches = StepBatches(source, data_cfg["batch_size"], self.cfg["runtime"]["seed"],
                                  self.ddp.rank, self.ddp.world_size)
            loader: Iterable[dict[str, Tensor]] = torch.utils.data.DataLoader(
                batches, batch_size=None, sampler=range(self.step, sched["steps"]),
                num_workers=data_cfg["workers"],
                # Its own generator: a DataLoader iterator otherwise draws its base seed
                # from the global RNG, which would shift the quantisation noise after a
                # resume.
                generator=torch.Generator(),
            )
        else:
            user, val = user_batches(self.data, self.val_data, data_cfg["batch_size"],
                                     data_cfg["val_count"], self.cfg["runtime"]["seed"])
            loader = itertools.islice(user, max(0, sched["steps"] - self.step))
        self._prepare_run_dir()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        # Under a time budget the step count is a cap, not a forecast: no misleading ETA
        # from it (a plain log line's ETA is the budget left, or sooner).
        minutes = sched["minutes"]
        bar = progress_bar(
            total=sched["steps"] if minutes is None else None, initial=self.step,
            disable=not (self.ddp.is_main and self.cfg["runtime"]["progress"]),
            desc=self.kind, unit="step", dynamic_ncols=True,
            budget_s=None if minutes is None else max(0.0, minutes * 60 - self._elapsed()))
        window: dict[str, float] = defaultdict(float)
        window_n = 0
        self._segment_start = last_ckpt = time.monotonic()
        try:
            for batch in loader:
                if self._should_stop():
                    break
                terms = self.train_step({k: v.to(self.device) for k, v in batch.items()})
                if not math.isfinite(terms["loss"]):
                    # Stop before anything is saved: last.pt and best.pt stay good.
                    raise KdlicError(f"the loss became {terms['loss']} at step {self.step + 1}; "
                                     "stopped without saving (lower optim.lr?)")
                self.step += 1
                bar.update(1)
                for k, v in terms.items():
                    window[k] += v
                window_n += 1
                if self.step % sched["log_every"] == 0:
                    mean = {k: v / window_n for k, v in window.items()}
                    mean["psnr"] = psnr_from_mse(mean["mse"])
                    bar.set_postfix(loss=f"{mean['loss']:.3f}", bpp=f"{mean['bpp']:.3f}",
                                    psnr=f"{mean['psnr']:.2f}")
                    self._log({"step": self.step, "split": "train",
                               "lr": self.optimizer.param_groups[0]["lr"], **mean})
                    window, window_n = defaultdict(float), 0
                if self.step % sched["val_every"] == 0 or self.step == sched["steps"]:
                    self._validate_and_select(val)
                if sched["snapshot_every"] and self.step % sched["snapshot_every"] == 0:
                    self.save_snapshot()
                if time.monotonic() - last_ckpt >= sched["checkpoint_minutes"] * 60:
                    self.save("last.pt")
                    last_ckpt = time.monotonic()
        finally:
            bar.close()
            for s, handler in previous.items():
                signal.signal(s, handler)
        if not self.last_val or self.last_val.get("step") != self.step:
            self._validate_and_select(val)
        self.save("last.pt")
        self.elapsed_s, self._segment_start = self._elapsed(), None
        if self._stop_signal is not None:
            raise KeyboardInterrupt
        return self.last_val

    def _validate_and_select(self, val: Tensor) -> None:
        metrics = self.validate(val)
        self.plateau.update(metrics["rd_loss"])
        self.last_val = {"step": self.step, **metrics}
        self._log({"split": "val", "lr": self.optimizer.param_groups[0]["lr"], **self.last_val})
        if metrics["rd_loss"] < self.best_rd:
            self.best_rd = metrics["rd_loss"]
            self.save("best.pt")
        if self.ddp.is_main:
            write(
                f"[{self.kind}] step {self.step}: val rd_loss {metrics['rd_loss']:.4f} "
                f"bpp {metrics['bpp']:.4f} psnr {metrics['psnr']:.2f} dB"
            )

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Finish the current step, write last.pt, then stop (see fit()).
        self._stop_signal = signum
