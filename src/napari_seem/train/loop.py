"""The SEEM trainer: cached frozen features, simulated prompts, Hungarian losses, AdamW.

One training step takes ``batch_size`` cached crops and, for each, decodes all three query
groups at once (they are independent inside the decoder):

- **object queries** against the data's class vocabulary: Hungarian matching to every
  object (instances; one segment per class for ``semantic`` data), class cross-entropy with
  SEEM's temperature (``exp(logit_scale) * cos``), mask BCE and dice;
- **grounding queries** with the text of one class present in the crop (the class name or
  a synonym): the best-matching query learns the union of that class's objects, and the
  similarity of the queries' caption embeddings to the sentence learns to rank it first;
- **spatial queries** for 1..``max_prompts`` objects prompted by simulated clicks,
  scribbles, polygons, boxes (centre click) and masks; with probability
  ``multi_round_prob`` 1-2 earlier rounds run without gradient, each adding the official
  corrective click and handing its mask to the memory tokens (``prev_mask``). The loss is
  that of the best of the prompt's ``Q`` candidates plus a cross-entropy teaching the
  pooled-embedding rule to select it.

Losses are summed over the final and all earlier decoder predictions (deep supervision).
Frozen parts (backbone, and the pixel decoder when it is frozen) run once per crop when the
cache is built; only the trainable parts run per step, which keeps CPU training practical.

Checkpoints (``last.pt``) hold the trainable weights, the optimizer, the step and the RNG
state; each step draws its randomness from ``numpy.random.default_rng([seed, step])``, so
a resumed run repeats an uninterrupted one exactly.
"""

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_seem.core.progress import Progress, Reporter, check_cancelled
from napari_seem.model.build import resolve_device
from napari_seem.model.seem import ImageFeatures, SeemModel
from napari_seem.model.transforms import make_frame, preprocess
from napari_seem.train.config import (
    TASKS,
    CachedCrop,
    TrainConfig,
    default_trainable,
    fine_tune_trainable,
)
from napari_seem.train.console import ConsoleProgress
from napari_seem.train.criterion import Criterion
from napari_seem.train.data import LabelledImage, TrainingDataError
from napari_seem.train.losses import soft_targets
from napari_seem.train.rounds import earlier_round, prompted_objects
from napari_seem.train.text_cache import TextCache

__all__ = [
    "TASKS",
    "CachedCrop",
    "TrainConfig",
    "Trainer",
    "default_trainable",
    "export_checkpoint",
    "fine_tune_trainable",
]


class Trainer:
    """Train (or fine-tune) a SEEM model on labelled images.

    Args:
        model: the model to train, its weights already loaded (it is modified in place).
        data: validated training images.
        config: hyper-parameters.
        out_dir: where ``last.pt`` checkpoints go (None: no checkpoints).
        progress: show a tqdm bar with the running loss (False: a line on stderr every 25
            steps); see :class:`~napari_seem.train.console.ConsoleProgress`.
    """

    def __init__(
        self,
        model: SeemModel,
        data: Sequence[LabelledImage],
        config: TrainConfig,
        *,
        out_dir: str | Path | None = None,
        progress: bool = True,
    ) -> None:
        if not data:
            raise TrainingDataError("no training images")
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.config = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.data = list(data)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.step = 0
        self.history: list[float] = []
        self.vocabulary = list(dict.fromkeys(c for d in self.data for c in d.class_names))
        self._class_index = {c: i for i, c in enumerate(self.vocabulary)}

        prefixes = config.trainable or default_trainable(model)
        self.trainable_keys = [k for k in model.state_dict() if k.startswith(tuple(prefixes))]
        named = dict(model.named_parameters())
        for p in model.parameters():
            p.requires_grad_(False)
        self.params = {k: named[k] for k in self.trainable_keys if k in named}
        if not self.params:
            raise ValueError(f"no parameters match the trainable prefixes {prefixes[:4]}")
        for p in self.params.values():
            p.requires_grad_(True)
        pixel_trainable = any(k.startswith("sem_seg_head.pixel_decoder.") for k in self.params)
        backbone_trainable = any(k.startswith("backbone.") for k in self.params)
        if backbone_trainable:
            raise ValueError("training the backbone is not supported: features are cached")
        self._cache_backbone = pixel_trainable
        decay = [p for k, p in self.params.items() if p.ndim >= 2 and "embed" not in k]
        no_decay = [p for k, p in self.params.items() if not (p.ndim >= 2 and "embed" not in k)]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
        phrases = [p for c in self.vocabulary for p in self._phrases_of(c)]
        self.text = TextCache(model, self.vocabulary, phrases)
        self.criterion = Criterion(config, model)
        self.crops: list[CachedCrop] = []

    # ------------------------------------------------------------------ data

    def _phrases_of(self, name: str) -> list[str]:
        return list(dict.fromkeys([name, *self.config.synonyms.get(name, ())]))

    def _short_side(self) -> int | None:
        s = self.config.short_side
        if s == "auto":
            from napari_seem.model.build import get_config

            try:
                return get_config(self.model.name).short_side
            except ValueError:
                return None
        return None if s is None else int(s)

    @torch.no_grad()
    def build_cache(self) -> None:
        """Cache ``crops_per_image`` augmented crops of every image (frozen parts run once)."""
        from napari_seem.core.images import as_rgb_uint8

        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 2**31])
        short = self._short_side()
        dtype = getattr(torch, cfg.cache_dtype)
        self.model.eval()
        crops: list[CachedCrop] = []
        for item in self.data:
            rgb = torch.from_numpy(as_rgb_uint8(item.image)).permute(2, 0, 1).float()
            labels = torch.from_numpy(item.labels)
            h, w = item.labels.shape
            native = float(getattr(self.model, "native_scale", None) or 1.0)
            base = item.scale or ((short / min(h, w)) if short else native)
            made = 0
            for _ in range(cfg.crops_per_image * 4):
                if made == cfg.crops_per_image:
                    break
                crop = self._augment(rgb, labels, base, item, rng)
                if crop is None:
                    continue
                image, seg, classes = crop
                crops.append(self._encode_crop(image, seg, classes, dtype))
                made += 1
        if not crops:
            raise TrainingDataError("no training crop contains an object; are the labels tiny?")
        self.crops = crops

    def _augment(
        self,
        rgb: torch.Tensor,
        labels: torch.Tensor,
        base: float,
        item: LabelledImage,
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, np.ndarray, dict[int, int]] | None:
        """One random crop ``(3, s, s)`` float 0..255, its segment ids and their classes."""
        cfg = self.config
        scale = base * float(rng.uniform(*cfg.scale_jitter))
        h, w = labels.shape
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        img = F.interpolate(rgb[None], (nh, nw), mode="bilinear", antialias=True)[0]
        img = img.round().clamp(0, 255)
        lab = F.interpolate(labels[None, None].float(), (nh, nw), mode="nearest")[0, 0].long()
        s = cfg.crop
        r0 = int(rng.integers(0, max(nh - s, 0) + 1))
        c0 = int(rng.integers(0, max(nw - s, 0) + 1))
        img, lab = img[:, r0 : r0 + s, c0 : c0 + s], lab[r0 : r0 + s, c0 : c0 + s]
        if rng.random() < 0.5:
            img, lab = img.flip(-1), lab.flip(-1)
        if rng.random() < 0.5:
            img, lab = img.flip(-2), lab.flip(-2)
        if img.shape[-1] == img.shape[-2] and rng.random() < 0.5:
            img, lab = img.transpose(-1, -2), lab.transpose(-1, -2)
        gamma = float(np.exp(rng.uniform(-0.3, 0.3)))
        img = (255.0 * (img / 255.0) ** gamma * float(rng.uniform(0.8, 1.2))).clamp(0, 255).round()
        seg = lab.numpy().astype(np.int32)
        ids, counts = np.unique(seg, return_counts=True)
        keep = [int(i) for i, n in zip(ids, counts, strict=True) if i > 0 and n >= 12]
        if not keep:
            return None
        seg = np.where(np.isin(seg, keep), seg, 0)
        classes = {i: self._class_index[item.classes[i]] for i in keep}
        return img, seg, classes

    def _encode_crop(
        self, image: torch.Tensor, seg: np.ndarray, classes: dict[int, int], dtype: torch.dtype
    ) -> CachedCrop:
        s = self.config.crop
        h, w = seg.shape
        frame = make_frame((h, w), size_divisibility=32)
        x = preprocess(
            image[None].to(self.device),
            frame,
            self.model.pixel_mean.flatten(),
            self.model.pixel_std.flatten(),
        )
        x = F.pad(x, (0, s - x.shape[-1], 0, s - x.shape[-2]))
        padded = np.zeros((s, s), np.int32)
        padded[:h, :w] = seg
        feats = self.model.backbone(x)
        frozen: dict[str, torch.Tensor] | ImageFeatures
        if self._cache_backbone:
            frozen = {k: v.to(dtype) for k, v in feats.items()}
        else:
            out = self.model.sem_seg_head.pixel_decoder.forward_features(feats)
            ms = out.multi_scale_features
            frozen = ImageFeatures(out.mask_features, (ms[0], ms[1], ms[2]), (s, s)).to(
                self.device, dtype
            )
        return CachedCrop(frozen, padded, classes)

    def features(self, crops: list[CachedCrop]) -> ImageFeatures:
        """The trainable part's input for a batch of cached crops: ``ImageFeatures`` of
        batch ``len(crops)`` in the padded crop frame (the pixel decoder runs here when it
        is trained), in the trainable parameters' dtype, on the trainer's device."""
        s = self.config.crop
        param_dtype = next(iter(self.params.values())).dtype
        first = crops[0].frozen
        if isinstance(first, ImageFeatures):
            fs = [c.frozen for c in crops]
            assert all(isinstance(f, ImageFeatures) for f in fs)
            mf = torch.cat([f.mask_features for f in fs])  # type: ignore[union-attr]
            ms = tuple(
                torch.cat([f.multi_scale_features[i] for f in fs])  # type: ignore[union-attr]
                for i in range(3)
            )
            return ImageFeatures(mf, (ms[0], ms[1], ms[2]), (s, s)).to(self.device, param_dtype)
        feats = {
            k: torch.cat([c.frozen[k] for c in crops]).to(param_dtype)  # type: ignore[index]
            for k in first
        }
        out = self.model.sem_seg_head.pixel_decoder.forward_features(feats)
        ms = out.multi_scale_features
        return ImageFeatures(out.mask_features, (ms[0], ms[1], ms[2]), (s, s))

    def _loss_one(
        self, features: ImageFeatures, crop: CachedCrop, rng: np.random.Generator
    ) -> torch.Tensor:
        """The loss of one crop: every task of the run decoded at once, summed over the
        final and earlier decoder predictions (deep supervision)."""
        cfg = self.config
        seg = crop.labels
        ids = sorted(crop.segment_classes)
        masks = torch.from_numpy(np.stack([seg == i for i in ids])).to(self.device)
        soft = soft_targets(masks).flatten(1)  # (T, N)
        classes = torch.tensor([crop.segment_classes[i] for i in ids], device=self.device)
        kwargs: dict[str, Any] = {}
        tasks: list[str] = []
        if "object" in cfg.tasks:
            kwargs["class_embeddings"] = self.text.vocab()
            tasks.append("object")
        ground_target = None
        sentence = None
        absent = False
        if "grounding" in cfg.tasks:
            present = sorted(set(classes.tolist()))
            k = present[int(rng.integers(len(present)))]
            others = [c for c in range(len(self.vocabulary)) if c not in present]
            if others and rng.random() < cfg.grounding_absent:
                k, absent = others[int(rng.integers(len(others)))], True
            phrases = self._phrases_of(self.vocabulary[k])
            phrase = phrases[int(rng.integers(len(phrases)))]
            tokens, padding, sentence = self.text.phrase(phrase)
            kwargs.update(grounding_tokens=tokens, grounding_padding=padding)
            union = torch.from_numpy(np.isin(seg, [i for i in ids if crop.segment_classes[i] == k]))
            ground_target = soft_targets(union[None].to(self.device)).flatten(1)[0]
            tasks.append("grounding")
        chosen_targets = None
        if "spatial" in cfg.tasks:
            chosen, pos, neg = prompted_objects(
                seg,
                ids,
                rng,
                max_prompts=cfg.max_prompts,
                kinds=cfg.prompt_kinds,
                neighbour_negative=cfg.neighbour_negative,
            )
            prev = None
            if rng.random() < cfg.multi_round_prob:
                for _ in range(int(rng.integers(1, 3))):
                    prev = earlier_round(
                        self.model, features, seg, chosen, pos, neg, prev, device=self.device
                    )
            kwargs["visual_prompts"] = self.model.encode_visual_prompts(
                features,
                torch.from_numpy(pos[None]).to(self.device),
                torch.from_numpy(neg[None]).to(self.device),
            )
            kwargs["prev_mask"] = prev
            chosen_targets = soft[[ids.index(i) for i in chosen]]
            tasks.append("spatial")
        aux = torch.zeros((), device=self.device)
        if cfg.w_feature > 0:
            aux = cfg.w_feature * self.criterion.feature_loss(features, soft, rng)
        out = self.model.decode(features, tasks=tasks, return_aux=True, **kwargs)  # type: ignore[arg-type]
        total = torch.zeros((), device=self.device)
        for pred in (*out.aux, out):
            final = pred is out
            if "object" in tasks:
                total = total + self.criterion.object_loss(pred, soft, classes)
            if ground_target is not None and sentence is not None:
                total = total + self.criterion.grounding_loss(pred, ground_target, sentence, absent)
            if chosen_targets is not None:
                total = total + self.criterion.spatial_loss(
                    pred, chosen_targets, out.spatial_logits if final else None
                )
        return total / (len(out.aux) + 1) + aux

    @torch.no_grad()
    def eval_loss(self, seed: int = 12345) -> float:
        """Mean training loss over every cached crop with fixed randomness (no update):
        a deterministic yardstick for before/after comparisons on any data."""
        if not self.crops:
            self.build_cache()
        self.model.eval()
        total = 0.0
        for n, crop in enumerate(self.crops):
            rng = np.random.default_rng([seed, n])
            features = self.features([crop])
            total += float(self._loss_one(features, crop, rng))
        return total / len(self.crops)

    def _lr(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    def train_step(self) -> float:
        """One optimizer step; returns its loss."""
        if not self.crops:
            self.build_cache()
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.step])
        picks = rng.integers(len(self.crops), size=cfg.batch_size)
        batch = [self.crops[int(i)] for i in picks]
        return self._optimise(batch, rng, self._loss_one)

    def _optimise(
        self,
        batch: list[CachedCrop],
        rng: np.random.Generator,
        loss_one: Callable[[ImageFeatures, CachedCrop, np.random.Generator], torch.Tensor],
    ) -> float:
        """One optimizer step on ``batch`` with the per-crop ``loss_one`` (mean over the
        batch; an empty batch only advances the step); returns the loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        self.model.train()
        loss = torch.zeros((), device=self.device)
        if batch:
            features = self.features(batch)
            for b, crop in enumerate(batch):
                loss = loss + loss_one(features.select(b), crop, rng)
            loss = loss / len(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(self.params.values()), self.config.grad_clip)
            self.optimizer.step()
        self.model.eval()
        self.step += 1
        value = float(loss.detach())
        self.history.append(value)
        return value

    def train(
        self,
        steps: int | None = None,
        *,
        reporter: Reporter | None = None,
        cancel: threading.Event | None = None,
    ) -> list[float]:
        """Train until ``steps`` (default ``config.steps``) total steps are done.

        After every step (and its periodic ``last.pt`` checkpoint) ``reporter`` is told
        ``Progress(step, total, "step S/T loss L", values={"loss": this step's loss,
        "recent_loss": mean of the last 20})``; then, when ``cancel`` is set, the run stops
        with :class:`~napari_seem.core.progress.Cancelled` (a reporter may raise it too).
        ``last.pt`` is written at the end either way (with an ``out_dir``), so a stopped
        run resumes where it stopped; the steps run stay in :attr:`history`.

        Returns:
            The losses of the steps run by this call.
        """
        total = self.config.steps if steps is None else steps
        if not self.crops:
            self.build_cache()
        losses: list[float] = []
        console = ConsoleProgress(total, self.step, bar=self.progress)
        start = time.perf_counter()
        try:
            while self.step < total:
                value = self.train_step()
                losses.append(value)
                recent = self.history[-20:]
                mean = sum(recent) / len(recent)
                progress = Progress(
                    self.step,
                    total,
                    f"step {self.step}/{total} loss {mean:.3f}",
                    {"loss": value, "recent_loss": mean},
                )
                console(progress)
                every = self.config.checkpoint_every
                if self.out_dir is not None and every and self.step % every == 0:
                    self.save_checkpoint(self.out_dir / "last.pt")
                if reporter is not None:
                    reporter(progress)
                check_cancelled(cancel, "training")
        finally:
            console.close()
            if self.out_dir is not None:
                self.save_checkpoint(self.out_dir / "last.pt")
            self.elapsed = time.perf_counter() - start
        return losses

    # ------------------------------------------------------------------ checkpoints

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The trainable tensors (parameters and buffers under the trainable keys), on CPU."""
        state = self.model.state_dict()
        return {k: state[k].detach().cpu().clone() for k in self.trainable_keys}

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write model (trainable part), optimizer, step and RNG state (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "variant": self.model.name,
            "trained": self.trained_state(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "history": list(self.history),
            "config": asdict(self.config),
            "torch_rng": torch.get_rng_state(),
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume from :meth:`save_checkpoint` output (same model variant and data)."""
        payload = torch.load(str(path), map_location="cpu", weights_only=False)
        if payload.get("variant") != self.model.name:
            raise ValueError(
                f"{path} was written for {payload.get('variant')!r}, not {self.model.name!r}"
            )
        missing = set(self.trainable_keys) - set(payload["trained"])
        if missing:
            raise ValueError(f"{path} lacks trainable weights: {sorted(missing)[:5]}")
        self.model.load_state_dict(payload["trained"], strict=False)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step = int(payload["step"])
        self.history = list(payload["history"])
        torch.set_rng_state(payload["torch_rng"])

    def save_cache(self, path: str | Path) -> Path:
        """Write the cached crops (so a resumed run skips the frozen forward passes)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"signature": self._cache_signature(), "crops": self.crops}, tmp)
        os.replace(tmp, path)
        return path

    def load_cache(self, path: str | Path) -> bool:
        """Use crops written by :meth:`save_cache` if they were made with the same settings
        and data; returns whether they were used."""
        path = Path(path)
        if not path.exists():
            return False
        payload = torch.load(str(path), map_location=self.device, weights_only=False)
        if payload.get("signature") != self._cache_signature():
            return False
        self.crops = payload["crops"]
        return True

    def _cache_signature(self) -> str:
        cfg = self.config
        parts = [
            self.model.name,
            str(cfg.seed),
            str(cfg.crop),
            str(cfg.crops_per_image),
            str(cfg.short_side),
            str(cfg.scale_jitter),
            cfg.cache_dtype,
            str(self._cache_backbone),
            *(f"{d.name}:{d.labels.shape}:{int(d.labels.sum())}" for d in self.data),
        ]
        return "|".join(parts)

    def export(self, path: str | Path, *, half: bool = False) -> Path:
        """Write the trained weights as safetensors (what ``build_seem(checkpoint=)`` or
        :func:`napari_seem.train.load_finetuned` reads)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # every part the variant's weight file holds, also those this run kept frozen (a
        # decoder-only fine-tune must still load as a complete seem-lite file)
        full = self.model.state_dict()
        keys = dict.fromkeys([*default_trainable(self.model), *self.trainable_keys])
        state = {k: full[k].detach().cpu().clone() for k in keys}
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        meta = {
            "format": "napari-seem-trained-parts",
            "variant": self.model.name,
            "steps": str(self.step),
            "vocabulary": ",".join(self.vocabulary),
        }
        save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=meta)
        return path


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, half: bool = True) -> Path:
    """Turn a trainer ``last.pt`` into the safetensors weight file :meth:`Trainer.export`
    writes (e.g. to ship the weights of a run that was stopped early)."""
    from safetensors.torch import save_file

    payload = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    state = payload["trained"]
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {
        "format": "napari-seem-trained-parts",
        "variant": str(payload["variant"]),
        "steps": str(payload["step"]),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out), metadata=meta)
    return out
