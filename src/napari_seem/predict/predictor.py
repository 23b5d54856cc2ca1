"""``SeemPredictor``: a scripting API over one SEEM model and one current image.

The model is stateless; the predictor owns what is worth keeping between calls:

- the current image's :class:`~napari_seem.model.transforms.ModelFrame`, its encoded
  :class:`~napari_seem.model.seem.ImageFeatures` and the decoder's per-image key/value cache
  (so a click costs only the decoder's query side);
- text embeddings of vocabularies and phrases (keyed by the strings);
- the mask logits of the masks it returned, so that passing a returned
  :class:`~napari_seem.core.results.ObjectMask` back as ``previous`` gives the model exactly the
  official round-2 memory input. A mask the user edited (or any other binary mask) is turned
  into logits of ``+/-MEMORY_LOGIT``: memory tokens only look at where the resized logits are
  >= 0, so a binary mask carries the same information up to sub-pixel boundaries.

Inputs and outputs are in level-0 ``(row, col)`` pixels of the image given to
:meth:`SeemPredictor.set_image`; all resizing, padding and coordinate flips happen through
:mod:`napari_seem.model.transforms` (and its numpy twin
:func:`napari_seem.core.rasterize.to_frame`).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from napari_seem.core.images import as_rgb_uint8
from napari_seem.core.prompts import Box, ObjectPrompt, PromptError, PromptSet, ReferringExample
from napari_seem.core.rasterize import rasterize_objects, rasterize_prompts
from napari_seem.core.results import ObjectMask, SegmentationResult
from napari_seem.model.build import build_seem, get_config
from napari_seem.model.decoder import ImageMemory
from napari_seem.model.decoder_outputs import class_logits
from napari_seem.model.postprocess import (
    instance_inference,
    l2_normalize,
    panoptic_inference,
    rank_grounding_queries,
    semantic_inference,
    vl_similarity,
)
from napari_seem.model.prompt_window import OUTSIDE_LOGIT, Window, crop_features, prompt_window
from napari_seem.model.seem import ImageFeatures, SeemModel
from napari_seem.model.text_encoder import Tokenizer
from napari_seem.model.tokenizer import ClipTokenizer, load_clip_tokenizer
from napari_seem.model.transforms import (
    ModelFrame,
    logits_to_image,
    make_frame,
    masks_to_model_frame,
    preprocess,
)
from napari_seem.predict.everything import PointsSettings, segment_by_points
from napari_seem.predict.grounding import ground_in_windows

__all__ = ["MEMORY_LOGIT", "EncodedImage", "SeemPredictor", "as_rgb_uint8"]

#: Logit given to a binary mask used as round-to-round memory (sigmoid = 0.9997).
MEMORY_LOGIT = 8.0
_MAX_REMEMBERED = 256
EverythingMode = Literal["panoptic", "instance", "semantic", "points", "auto"]


@dataclass(frozen=True)
class EncodedImage:
    """An image as the decoder sees it.

    Attributes:
        frame: how the level-0 image maps into the padded model input.
        features: encoder output (batch of one) in the padded model frame.
        image_memory: the decoder's per-image cross-attention keys/values (filled lazily).
    """

    frame: ModelFrame
    features: ImageFeatures
    image_memory: ImageMemory | None = field(default=None, compare=False)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.frame.image_hw


def _mask_key(obj: ObjectMask) -> tuple[tuple[int, int], tuple[int, ...], bytes]:
    return (obj.offset, obj.mask.shape, np.packbits(obj.mask).tobytes())


class SeemPredictor:
    """Promptable segmentation of one image at a time with a SEEM model.

    Args:
        model: a built :class:`SeemModel` (see :func:`SeemPredictor.from_variant`).
        tokenizer: a CLIP tokenizer, a path to its vocabulary, or None to find one on first
            use (see :func:`napari_seem.model.tokenizer.load_clip_tokenizer`).
        short_side: resize the shorter image side to this before encoding; ``"auto"`` uses
            the variant's default (512 for Focal; SAM resizes the long side to its input
            size), None encodes at native resolution (tiles of large images), times the
            model's ``native_scale`` when it has one (seem-lite: 2.25, the scale its
            training images were seen at).
        mask_resize: ``"official"`` resamples mask logits to the image with the official
            bilinear + antialiased bicubic chain; ``"bilinear"`` uses one bilinear resample
            (faster, differs in well under 1% of boundary pixels).
        autocast: run encoder and decoder under autocast with this dtype (e.g.
            ``torch.bfloat16`` on a GPU); None runs in the model's dtype.
        connected: keep only the parts of an interactive answer that touch the object's
            positive clicks or scribbles (a click means "this object": disconnected
            lookalikes are dropped). ``"auto"``: on for models that decode in prompt
            windows (seem-lite), off for the official variants (their answers are
            returned as the model gives them).
    """

    def __init__(
        self,
        model: SeemModel,
        *,
        tokenizer: ClipTokenizer | str | None = None,
        short_side: int | Literal["auto"] | None = "auto",
        mask_resize: Literal["official", "bilinear"] = "official",
        autocast: torch.dtype | None = None,
        connected: bool | Literal["auto"] = "auto",
    ) -> None:
        self.model = model.eval()
        self.connected = (
            getattr(model, "prompt_window", None) is not None if connected == "auto" else connected
        )
        self._tokenizer: Tokenizer | None = (
            tokenizer if isinstance(tokenizer, ClipTokenizer) else None
        )
        self._tokenizer_path = tokenizer if isinstance(tokenizer, str) else None
        self.short_side = short_side
        self.mask_resize: Literal["official", "bilinear"] = mask_resize
        self.autocast = autocast
        self._encoded: EncodedImage | None = None
        self._vocabularies: dict[tuple[str, ...], torch.Tensor] = {}
        self._sentences: dict[str, torch.Tensor] = {}
        self._remembered: OrderedDict[tuple[object, ...], torch.Tensor] = OrderedDict()

    @classmethod
    def from_variant(
        cls,
        variant: str = "seem-focalt-v1",
        *,
        checkpoint: str | None = None,
        device: str = "auto",
        **kwargs: object,
    ) -> SeemPredictor:
        """Build a model (random weights without ``checkpoint``) and wrap it."""
        return cls(build_seem(variant, checkpoint=checkpoint, device=device), **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ helpers

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            # a text encoder that brings its own tokenizer (seem-lite's MiniLM) uses it
            bundled = getattr(self.model.text_encoder, "bundled_tokenizer", None)
            if bundled is not None and self._tokenizer_path is None:
                self._tokenizer = bundled()
            else:
                self._tokenizer = load_clip_tokenizer(self._tokenizer_path)
        return self._tokenizer

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        # no_grad, not inference_mode: cached features are reused in later (plain) calls
        with torch.no_grad():
            if self.autocast is None:
                yield
            else:
                with torch.autocast(self.device.type, dtype=self.autocast):
                    yield

    def _frame_for(self, image_hw: tuple[int, int]) -> ModelFrame:
        model = self.model
        if model.fixed_size is not None:
            return make_frame(image_hw, long_side=model.fixed_size, fixed_size=model.fixed_size)
        short = self.short_side
        if short == "auto":
            short = get_config(model.name).short_side if _known(model.name) else None
        elif short is None and (native := getattr(model, "native_scale", None)):
            # "native" for a model trained on upsampled images (seem-lite): its pixel scale
            short = max(1, round(min(image_hw) * float(native)))
        return make_frame(image_hw, short_side=short, size_divisibility=model.size_divisibility)

    @property
    def encoded(self) -> EncodedImage:
        if self._encoded is None:
            raise RuntimeError("no image is set: call set_image(image) first")
        return self._encoded

    # ------------------------------------------------------------------ images

    def encode(self, image: npt.ArrayLike) -> EncodedImage:
        """Encode an image without making it current (e.g. a referring example)."""
        return self.encode_many([image])[0]

    def encode_many(self, images: Sequence[npt.ArrayLike]) -> list[EncodedImage]:
        """Encode several images of one shape (e.g. tiles) in a single batched forward."""
        rgbs = [as_rgb_uint8(image) for image in images]
        if not rgbs:
            return []
        if len({rgb.shape for rgb in rgbs}) != 1:
            raise ValueError("encode_many needs images of one shape; encode others separately")
        frame = self._frame_for((rgbs[0].shape[0], rgbs[0].shape[1]))
        batch = torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2).to(self.device)
        with self._inference():
            model_input = preprocess(
                batch,  # uint8: rounded after a resize, as the official uint8 pipelines
                frame,
                self.model.pixel_mean.flatten(),
                self.model.pixel_std.flatten(),
                dtype=self.model.dilation_kernel.dtype,
            )
            features = self.model.encode_image(model_input)
        return [EncodedImage(frame, features.select(i)) for i in range(len(rgbs))]

    def set_image(self, image: npt.ArrayLike) -> EncodedImage:
        """Encode ``image`` and make it the current image. Returns the encoding (cacheable)."""
        self._encoded = self.encode(image)
        self._remembered.clear()
        return self._encoded

    def reset_caches(self) -> None:
        """Forget everything computed with the current weights (the image encoding, text
        embeddings, remembered mask logits): call after loading new weights."""
        self._encoded = None
        self._vocabularies.clear()
        self._sentences.clear()
        self._remembered.clear()

    def set_encoded(self, encoded: EncodedImage) -> None:
        """Make an earlier encoding current (the engine's feature cache uses this)."""
        self._encoded = encoded
        self._remembered.clear()

    def _image_memory(self) -> ImageMemory | None:
        enc = self.encoded
        if enc.image_memory is None:
            with self._inference():
                memory = self.model.decoder.project_image(enc.features.multi_scale_features)
            enc = EncodedImage(enc.frame, enc.features, memory)
            self._encoded = enc
        return enc.image_memory

    # ------------------------------------------------------------------ text

    def class_embeddings(self, vocabulary: Sequence[str]) -> torch.Tensor:
        """``(K+1, D)`` unit-norm embeddings of ``vocabulary`` + "background" (cached)."""
        key = tuple(_clean_names(vocabulary))
        if key not in self._vocabularies:
            with self._inference():
                emb = self.model.text_encoder.class_vocabulary(list(key), self.tokenizer)
            self._vocabularies[key] = emb.float()
        return self._vocabularies[key]

    def _sentence(self, text: str) -> torch.Tensor:
        if text not in self._sentences:
            with self._inference():
                emb = self.model.text_encoder.sentence_embeddings([text], self.tokenizer)[0]
            self._sentences[text] = emb.float()
        return self._sentences[text]

    # ------------------------------------------------------------------ masks

    def _to_image(self, logits: torch.Tensor) -> np.ndarray:
        """``(N, h, w)`` stride-4 logits -> ``(N, H, W)`` bool masks at level 0."""
        frame = self.encoded.frame
        full = logits_to_image(logits.float(), frame, frame.image_hw, method=self.mask_resize)
        return (full > 0).cpu().numpy()

    def _memory_from_mask(self, mask: np.ndarray) -> torch.Tensor:
        """A binary level-0 mask -> ``(h, w)`` stride-4 logits of ``+/-MEMORY_LOGIT``."""
        frame = self.encoded.frame
        padded = masks_to_model_frame(torch.from_numpy(mask[None]).to(self.device), frame)
        cover = F.avg_pool2d(padded[None].float(), 4)[0, 0]  # fraction of each 4x4 cell
        return torch.where(cover >= 0.5, MEMORY_LOGIT, -MEMORY_LOGIT)

    def _remember(self, obj: ObjectMask, logits: torch.Tensor) -> None:
        self._remembered[_mask_key(obj)] = logits.detach()
        while len(self._remembered) > _MAX_REMEMBERED:
            self._remembered.popitem(last=False)

    def _previous_logits(
        self,
        previous: SegmentationResult | Sequence[ObjectMask | npt.ArrayLike | None],
        count: int,
    ) -> torch.Tensor | None:
        items = list(previous)
        if len(items) != count:
            raise PromptError(
                f"previous has {len(items)} masks but there are {count} objects: pass one "
                "previous mask (or None) per object, in the same order"
            )
        if all(item is None for item in items):
            return None
        h, w = self.encoded.features.mask_features.shape[-2:]
        rows = []
        for item in items:
            if item is None:
                # no memory for this object: memory tokens see nothing of it
                rows.append(torch.full((h, w), -MEMORY_LOGIT, device=self.device))
            elif isinstance(item, ObjectMask):
                known = self._remembered.get(_mask_key(item))
                rows.append(
                    known
                    if known is not None
                    else self._memory_from_mask(item.full(self.encoded.image_shape))
                )
            else:
                mask = np.asarray(item).astype(bool)
                if mask.shape != self.encoded.image_shape:
                    raise PromptError(
                        f"previous mask has shape {mask.shape}; the image is "
                        f"{self.encoded.image_shape}"
                    )
                rows.append(self._memory_from_mask(mask))
        return torch.stack(rows)[None]

    # ------------------------------------------------------------------ tasks

    @torch.no_grad()
    def predict(
        self,
        prompts: PromptSet | ObjectPrompt | Sequence[ObjectPrompt],
        *,
        previous: SegmentationResult | Sequence[ObjectMask | npt.ArrayLike | None] | None = None,
        vocabulary: Sequence[str] | None = None,
        grounding_threshold: float = 0.05,
    ) -> SegmentationResult:
        """Answer a prompt set on the current image.

        - every :class:`ObjectPrompt` gets exactly one mask (interactive; its text, if any,
          composes with its visual prompts, see :meth:`_choose_candidates`);
        - every grounding text of a :class:`PromptSet` gets all its instances
          (:meth:`ground`);
        - a :class:`ReferringExample` gets the matching object (:meth:`refer`).

        Args:
            previous: last round's answer per object (the returned result, its objects, or
                binary masks; None entries for new objects): switches on memory.
            vocabulary: class names to label interactive masks with (open vocabulary);
                None leaves ``class_name`` empty unless the object had text.
        """
        enc = self.encoded
        if isinstance(prompts, PromptSet):
            if prompts.image_shape != enc.image_shape:
                raise PromptError(
                    f"the prompts were made for an image of shape {prompts.image_shape}, "
                    f"the current image is {enc.image_shape}"
                )
            objects = list(prompts.objects)
            texts, example = list(prompts.texts), prompts.example
        else:
            objects = [prompts] if isinstance(prompts, ObjectPrompt) else list(prompts)
            texts, example = [], None
            for obj in objects:
                obj.check_fits(enc.image_shape)
        found: list[ObjectMask] = []
        if objects:
            found += self._interactive(objects, previous, vocabulary)
        if texts:
            found += self.ground(
                [t.text for t in texts], score_threshold=grounding_threshold
            ).objects
        if example is not None:
            found += self.refer(example).objects
        return SegmentationResult(enc.image_shape, tuple(found))

    def _interactive(
        self,
        objects: list[ObjectPrompt],
        previous: SegmentationResult | Sequence[ObjectMask | npt.ArrayLike | None] | None,
        vocabulary: Sequence[str] | None,
    ) -> list[ObjectMask]:
        enc = self.encoded
        frame = enc.frame
        visual_objects = [o for o in objects if o.visual]
        if len(visual_objects) != len(objects):
            raise PromptError(
                "an object prompt without visual prompts is a text query: put the text in "
                "PromptSet.texts (all instances) or add a click to it"
            )
        # SEEM has no box encoder: a box prompts with its centre and bounds the answer
        pos, neg = rasterize_objects(objects, frame.padded_hw, scale=frame.scale, box_mode="center")
        prev = None if previous is None else self._previous_logits(previous, len(objects))
        smasks, spatial_logits, stexts = self._decode_spatial(pos, neg, prev)
        chosen = self._choose_candidates(objects, spatial_logits, stexts)
        logits = smasks[chosen]  # (P, h, w)
        captions = stexts[chosen]  # (P, D)
        masks = self._to_image(logits)
        if self.connected:
            marks, _ = rasterize_objects(objects, frame.image_hw, box_mode="center")
            triples = zip(masks, marks, objects, strict=True)
            masks = np.stack([_touching(m, k, o) for m, k, o in triples])
        names, name_scores = self._name(captions, vocabulary)
        results = []
        for p, obj in enumerate(objects):
            mask = _bound_by_boxes(masks[p], obj)
            score = _mask_score(logits[p])
            name, name_score = names[p], name_scores[p]
            if obj.text is not None:
                sim = torch.dot(l2_normalize(captions[p].float()), self._sentence(obj.text.text))
                name, name_score = obj.text.text, float(sim)
            result = ObjectMask.from_full(
                mask,
                score=score,
                class_name=name,
                class_score=name_score,
                prompt=obj,
                source="interactive",
            )
            self._remember(result, logits[p])
            results.append(result)
        return results

    def _decode_spatial(
        self, pos: np.ndarray, neg: np.ndarray, prev: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode ``(P, H_pad, W_pad)`` prompt masks (and memory ``(1, P, h, w)``).

        Returns the spatial queries' ``(P*Q, h, w)`` mask logits, ``(P*Q, P)`` selection
        logits (-inf off the prompt's own queries) and ``(P*Q, D)`` caption embeddings. A
        model with a ``prompt_window`` decodes each prompt inside its window (see
        :mod:`napari_seem.model.prompt_window`); others decode all prompts at once.
        """
        enc = self.encoded
        size = getattr(self.model, "prompt_window", None)
        windows: list[Window | None] = [None] * len(pos)
        if size:
            for p in range(len(pos)):
                touched = pos[p] | neg[p]
                if prev is not None:
                    grown = (prev[0, p] > 0).repeat_interleave(4, 0).repeat_interleave(4, 1)
                    touched = touched | grown.cpu().numpy()[: touched.shape[0], : touched.shape[1]]
                windows[p] = prompt_window(touched, enc.features.padded_hw, size)
        if all(w is None for w in windows):
            with self._inference():
                out = self._decode_prompts(enc.features, pos, neg, prev, self._image_memory())
            return out
        q = self.model.decoder.config.queries_per_prompt
        h4, w4 = enc.features.mask_features.shape[-2:]
        dtype = enc.features.mask_features.dtype
        smasks = torch.full((len(pos) * q, h4, w4), OUTSIDE_LOGIT, device=self.device, dtype=dtype)
        slogits = torch.full((len(pos) * q, len(pos)), float("-inf"), device=self.device)
        stexts: list[torch.Tensor] = []
        for p, window in enumerate(windows):
            rows = slice(p * q, (p + 1) * q)
            one = slice(p, p + 1)
            if window is None:
                feats, cells, px = enc.features, (slice(None), slice(None)), (slice(None),) * 2
            else:
                feats = crop_features(enc.features, window)
                cells = window.cells(4)
                px = window.cells(1)
            memory = None if prev is None else prev[:, one][..., cells[0], cells[1]]
            with self._inference():
                m, lg, tx = self._decode_prompts(
                    feats, pos[one][:, px[0], px[1]], neg[one][:, px[0], px[1]], memory, None
                )
            smasks[rows][:, cells[0], cells[1]] = m.to(dtype)
            slogits[rows, p] = lg[:, 0].float()
            stexts.append(tx)
        return smasks, slogits, torch.cat(stexts)

    def _decode_prompts(
        self,
        features: ImageFeatures,
        pos: np.ndarray,
        neg: np.ndarray,
        prev: torch.Tensor | None,
        image_memory: ImageMemory | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder pass over all prompts in ``features``' frame (:meth:`_decode_spatial`)."""
        tokens = self.model.encode_visual_prompts(
            features,
            torch.from_numpy(np.ascontiguousarray(pos)[None]).to(self.device),
            torch.from_numpy(np.ascontiguousarray(neg)[None]).to(self.device),
        )
        out = self.model.decode(
            features,
            visual_prompts=tokens,
            prev_mask=prev,
            tasks=("spatial",),
            return_aux=False,
            image_memory=image_memory,
        )
        assert out.pred_smasks is not None and out.spatial_logits is not None
        assert out.pred_stexts is not None
        return out.pred_smasks[0], out.spatial_logits[0], out.pred_stexts[0]

    def _choose_candidates(
        self, objects: list[ObjectPrompt], spatial_logits: torch.Tensor, captions: torch.Tensor
    ) -> torch.Tensor:
        """Index of the answering spatial query per object.

        Without text this is the official rule: the query whose mask embedding best matches
        the pooled prompt vector (``argmax`` of ``spatial_logits``). With text (composition,
        e.g. "nucleus" + a click) each of the object's candidate queries is scored by
        ``log_softmax(spatial logits) + log_softmax(text similarity)`` over its candidates,
        so the answer must fit both the visual prompt and the phrase.

        Args:
            spatial_logits: ``(P*Q, P)``; -inf where a query belongs to another prompt.
            captions: ``(P*Q, D)`` caption embeddings of the spatial queries.
        """
        chosen = spatial_logits.float().argmax(0)
        q = spatial_logits.shape[0] // max(len(objects), 1)
        for p, obj in enumerate(objects):
            if obj.text is None:
                continue
            rows = slice(p * q, (p + 1) * q)
            visual = spatial_logits[rows, p].float().log_softmax(0)
            text = vl_similarity(
                captions[rows].float(),
                self._sentence(obj.text.text)[None],
                self.model.text_encoder.logit_scale.float(),
            )[:, 0].log_softmax(0)
            chosen[p] = p * q + int((visual + text).argmax())
        return chosen

    def _name(
        self, captions: torch.Tensor, vocabulary: Sequence[str] | None
    ) -> tuple[list[str | None], list[float | None]]:
        """Best class of each caption embedding ``(N, D)`` among ``vocabulary`` (no background)."""
        if not vocabulary:
            return [None] * len(captions), [None] * len(captions)
        names = _clean_names(vocabulary)
        emb = self.class_embeddings(names)
        logits = class_logits(captions[None].float(), emb, self.model.text_encoder.logit_scale)
        prob = logits[0].softmax(-1)[:, :-1]
        best = prob.argmax(-1)
        return [names[int(i)] for i in best], [float(prob[n, i]) for n, i in enumerate(best)]

    @torch.no_grad()
    def ground(
        self,
        texts: Sequence[str],
        *,
        score_threshold: float = 0.05,
        max_instances: int | None = None,
        windowed: bool | None = None,
    ) -> SegmentationResult:
        """Every instance of each referring phrase, ranked, with scores.

        The official model returns one mask per phrase (the best grounding query); here the
        best one always comes first and further queries follow when their share of the
        phrase's softmax over queries is at least ``score_threshold`` and their mask does not
        duplicate a better one (see :func:`napari_seem.model.postprocess.rank_grounding_queries`).

        ``windowed`` (None: on for models with a ``prompt_window``, i.e. seem-lite) grounds
        in windows of the trained crop size instead and returns the connected parts of the
        answer (see :mod:`napari_seem.predict.grounding`).
        """
        texts = [t.strip() for t in texts]
        if not texts or any(not t for t in texts):
            raise PromptError("grounding needs at least one non-empty phrase")
        enc = self.encoded
        if windowed is None:
            windowed = getattr(self.model, "prompt_window", None) is not None
        if windowed:
            found = ground_in_windows(self, texts, max_instances=max_instances)
            return SegmentationResult(enc.image_shape, tuple(found))
        with self._inference():
            tokens, padding = self.model.text_encoder.grounding_tokens(texts, self.tokenizer)
            out = self.model.decode(
                enc.features,
                grounding_tokens=tokens.to(enc.features.mask_features.dtype),
                grounding_padding=padding,
                tasks=("grounding",),
            )
        assert out.pred_gmasks is not None and out.pred_gtexts is not None
        sentences = torch.stack([self._sentence(t) for t in texts])
        sim = vl_similarity(
            out.pred_gtexts[0].float(), sentences, self.model.text_encoder.logit_scale.float()
        )
        ranked = rank_grounding_queries(
            sim,
            out.pred_gmasks[0].float(),
            score_threshold=score_threshold,
            max_matches=max_instances,
        )
        objects = []
        for text, matches in zip(texts, ranked, strict=True):
            masks = self._to_image(out.pred_gmasks[0, matches.queries])
            for mask, score in zip(masks, matches.scores.tolist(), strict=True):
                objects.append(
                    ObjectMask.from_full(
                        mask,
                        score=score,
                        class_name=text,
                        class_score=score,
                        source="grounding",
                    )
                )
        return SegmentationResult(enc.image_shape, tuple(objects))

    @torch.no_grad()
    def refer(
        self,
        example: ReferringExample,
        *,
        example_image: npt.ArrayLike | None = None,
        example_encoded: EncodedImage | None = None,
    ) -> SegmentationResult:
        """Segment, on the current image, what ``example``'s prompts mark on another image.

        The example image is ``example_encoded`` (already encoded by this predictor, e.g.
        with :meth:`encode`: reuse it when referring the same example on many tiles),
        else ``example_image`` or ``example.image``, encoded here; its prompts become
        visual tokens on its own features, and those tokens are decoded against the
        current image (the official v1 code fails on this path; ours does not).
        """
        if example_encoded is not None:
            other = example_encoded
        else:
            image = example_image if example_image is not None else example.image
            if image is None:
                raise PromptError(
                    f"the referring example {example.image_ref or ''!s} has no pixels: pass "
                    "example_image=, example_encoded= or build it with "
                    "ReferringExample.from_image(...)"
                )
            other = self.encode(image)
        if other.image_shape != example.image_shape:
            raise PromptError(
                f"the example prompts were drawn on an image of shape {example.image_shape}, "
                f"the example image has shape {other.image_shape}"
            )
        pos, neg = rasterize_prompts(
            example.visual, other.frame.padded_hw, scale=other.frame.scale, box_mode="center"
        )
        enc = self.encoded
        with self._inference():
            tokens = self.model.encode_visual_prompts(
                other.features,
                torch.from_numpy(pos[None, None]).to(self.device),
                torch.from_numpy(neg[None, None]).to(self.device),
            )
            out = self.model.decode(enc.features, visual_prompts=tokens, tasks=("spatial",))
        assert out.prev_mask is not None
        logits = out.prev_mask[0]
        mask = self._to_image(logits)[0]
        score = _mask_score(logits[0])
        obj = ObjectMask.from_full(
            mask, score=score, class_name=example.label, prompt=example, source="referring"
        )
        return SegmentationResult(enc.image_shape, (obj,))

    @torch.no_grad()
    def segment_everything(
        self,
        vocabulary: Sequence[str],
        *,
        mode: EverythingMode = "auto",
        object_mask_threshold: float = 0.4,
        overlap_threshold: float = 0.8,
        top_k: int = 100,
        min_area: int = 1,
        points: PointsSettings | None = None,
    ) -> SegmentationResult:
        """Generic segmentation of the whole image with the user's vocabulary.

        Args:
            vocabulary: class names (open vocabulary; "background" is appended).
            mode: ``"panoptic"`` (non-overlapping instances; every class counts as a
                "thing" so each object is separate), ``"instance"`` (top-k detections,
                may overlap), ``"semantic"`` (one object per class present), ``"points"``
                (prompt a grid of points and keep the confident, distinct answers, see
                :mod:`napari_seem.predict.everything`) or ``"auto"``: ``"points"`` for
                models that decode in prompt windows (seem-lite), else ``"panoptic"``.
            object_mask_threshold: panoptic: keep queries whose class probability exceeds
                this (official eval 0.8, demo 0.4).
            overlap_threshold: panoptic: drop a segment that keeps less than this fraction
                of its own mask after overlaps are resolved.
            top_k: instance: number of detections.
            min_area: drop objects smaller than this many level-0 pixels.
            points: settings of the ``"points"`` mode.
        """
        names = _clean_names(vocabulary)
        if mode == "auto":
            mode = "points" if getattr(self.model, "prompt_window", None) else "panoptic"
        if mode == "points":
            found = segment_by_points(self, names, points or PointsSettings())
            kept = tuple(o for o in found if o.area >= min_area)
            return SegmentationResult(self.encoded.image_shape, kept)
        emb = self.class_embeddings(names)
        enc = self.encoded
        with self._inference():
            out = self.model.decode(
                enc.features,
                class_embeddings=emb.to(enc.features.mask_features.dtype),
                tasks=("object",),
            )
        assert out.pred_logits is not None and out.pred_masks is not None
        logits = out.pred_logits[0].float()  # (Q, K+1)
        masks = out.pred_masks[0].float()  # (Q, h, w)
        objects: list[ObjectMask] = []
        if mode == "semantic":
            frame = enc.frame
            full = logits_to_image(masks, frame, frame.image_hw, method=self.mask_resize)
            sem = semantic_inference(logits, full)  # (K, H, W)
            label = sem.argmax(0).cpu().numpy()
            best = sem.max(0).values.cpu().numpy()
            for k, name in enumerate(names):
                mask = label == k
                if mask.sum() >= min_area:
                    objects.append(
                        ObjectMask.from_full(
                            mask,
                            score=float(best[mask].mean()),
                            class_name=name,
                            class_score=float(best[mask].mean()),
                            source="semantic",
                        )
                    )
        elif mode == "instance":
            inst = instance_inference(logits, masks, top_k=top_k)
            keep = inst.scores > 0
            detections = self._to_image(masks[inst.queries[keep]])
            for mask, score, cls in zip(
                detections, inst.scores[keep].tolist(), inst.classes[keep].tolist(), strict=True
            ):
                if mask.sum() >= min_area:
                    objects.append(
                        ObjectMask.from_full(
                            mask,
                            score=score,
                            class_name=names[cls],
                            class_score=score,
                            source="instance",
                        )
                    )
        elif mode == "panoptic":
            prob, cls = logits.softmax(-1).max(-1)
            keep = (cls != len(names)) & (prob > object_mask_threshold)
            queries = torch.nonzero(keep)[:, 0]
            if len(queries):
                frame = enc.frame
                # resample only the kept queries: 101 full-size maps would not fit big images
                full = logits_to_image(
                    masks[queries], frame, frame.image_hw, method=self.mask_resize
                )
                pano = panoptic_inference(
                    logits[queries],
                    full,
                    object_mask_threshold=object_mask_threshold,
                    overlap_threshold=overlap_threshold,
                    thing_classes=range(len(names)),
                )
                seg = pano.segment_map.cpu().numpy()
                for segment in pano.segments:
                    mask = seg == segment.id
                    if segment.area >= min_area:
                        objects.append(
                            ObjectMask.from_full(
                                mask,
                                score=segment.score,
                                class_name=names[segment.category_id],
                                class_score=segment.score,
                                source="panoptic",
                            )
                        )
        else:
            raise ValueError(
                f"mode must be 'panoptic', 'instance', 'semantic', 'points' or 'auto'; got {mode!r}"
            )
        return SegmentationResult(enc.image_shape, tuple(objects))


def _mask_score(logits: torch.Tensor) -> float:
    """Mean probability inside the mask of ``(h, w)`` logits (0 for an empty mask)."""
    prob = torch.sigmoid(logits.float())
    inside = prob > 0.5
    return float(prob[inside].mean()) if bool(inside.any()) else 0.0


def _known(name: str) -> bool:
    try:
        get_config(name)
    except ValueError:
        return False
    return True


def _clean_names(vocabulary: Sequence[str]) -> list[str]:
    if isinstance(vocabulary, str):
        vocabulary = [v for v in vocabulary.split(",")]
    names = [v.strip() for v in vocabulary]
    if not names or any(not n for n in names):
        raise PromptError(f"the vocabulary must be non-empty class names; got {list(vocabulary)!r}")
    if len(set(names)) != len(names):
        raise PromptError(f"the vocabulary repeats a class name: {names}")
    return names


def _touching(mask: np.ndarray, marks: np.ndarray, obj: ObjectPrompt) -> np.ndarray:
    """The connected parts of ``mask`` (level 0, ``(H, W)`` bool) that touch the positive
    ``marks``; the mask unchanged when none does, or when the object has a box (the box
    bounds the answer instead)."""
    from scipy import ndimage

    if any(isinstance(p, Box) for p in obj.visual) or not (mask & marks).any():
        return mask
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    parts, _ = ndimage.label(mask[window])
    keep = np.unique(parts[marks[window] & mask[window]])
    out = np.zeros_like(mask)
    out[window] = np.isin(parts, keep[keep > 0])
    return out


def _bound_by_boxes(mask: np.ndarray, obj: ObjectPrompt) -> np.ndarray:
    """Clip a level-0 mask to the union of the object's positive boxes (if it has any)."""
    boxes = [p for p in obj.visual if isinstance(p, Box)]
    if not boxes:
        return mask
    allowed = np.zeros_like(mask)
    h, w = mask.shape
    for box in boxes:
        r0 = max(int(np.floor(box.row_min)), 0)
        c0 = max(int(np.floor(box.col_min)), 0)
        r1 = min(int(np.ceil(box.row_max)) + 1, h)
        c1 = min(int(np.ceil(box.col_max)) + 1, w)
        allowed[r0:r1, c0:c1] = True
    return mask & allowed
