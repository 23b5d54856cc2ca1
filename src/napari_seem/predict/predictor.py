"""``SeemPredictor``: a scripting API over one SEEM model and one current image.

The model is stateless; the predictor owns what is worth keeping between calls:

- the current image's :class:`~napari_seem.model.transforms.ModelFrame`, its encoded
  :class:`~napari_seem.model.seem.ImageFeatures` and the decoder's per-image key/value cache
  (so a click costs only the decoder's query side);
- text embeddings of vocabularies and phrases (keyed by the strings);
- the mask logits of the masks it returned (round-to-round memory, see
  :mod:`napari_seem.predict.memory`).

Besides the tasks (:meth:`SeemPredictor.predict`, ``ground``, ``refer``,
``segment_everything``) it exposes the low-level operations the task modules are built on,
the way segment-anything's automatic mask generator uses only its predictor's public
methods: :meth:`~SeemPredictor.inference`, :meth:`~SeemPredictor.image_memory`,
:meth:`~SeemPredictor.decode_prompts`, :meth:`~SeemPredictor.decode_spatial`,
:meth:`~SeemPredictor.class_embeddings`, :meth:`~SeemPredictor.name_captions`,
:meth:`~SeemPredictor.sentence_embedding` and :meth:`~SeemPredictor.logits_to_masks`.

Inputs and outputs are in level-0 ``(row, col)`` pixels of the image given to
:meth:`SeemPredictor.set_image`; all resizing, padding and coordinate flips happen through
:mod:`napari_seem.model.transforms` (and its numpy twin
:func:`napari_seem.core.rasterize.to_frame`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from napari_seem.core.images import as_rgb_uint8
from napari_seem.core.prompts import ObjectPrompt, PromptError, PromptSet, ReferringExample
from napari_seem.core.rasterize import rasterize_prompts
from napari_seem.core.results import ObjectMask, SegmentationResult
from napari_seem.model.build import build_seem, get_config
from napari_seem.model.decoder import ImageMemory
from napari_seem.model.decoder_outputs import class_logits
from napari_seem.model.seem import ImageFeatures, SeemModel
from napari_seem.model.text_encoder import Tokenizer
from napari_seem.model.tokenizer import ClipTokenizer, load_clip_tokenizer
from napari_seem.model.transforms import ModelFrame, logits_to_image, make_frame, preprocess
from napari_seem.predict.answer import InteractiveSettings, answer_objects, answer_plain
from napari_seem.predict.encoding import EncodedImage
from napari_seem.predict.everything import PointsSettings, segment_by_points
from napari_seem.predict.generic import segment_by_queries
from napari_seem.predict.grounding import ground_in_windows, ground_whole_image
from napari_seem.predict.masks import clean_names, mask_score
from napari_seem.predict.memory import MEMORY_LOGIT, MaskMemory, PreviousMasks
from napari_seem.predict.spatial import choose_candidates, decode_spatial
from napari_seem.predict.views import ImagePixels, View, zoom_view

__all__ = ["MEMORY_LOGIT", "EncodedImage", "SeemPredictor", "as_rgb_uint8"]

EverythingMode = Literal["panoptic", "instance", "semantic", "points", "auto"]


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
        refine: make interactive answers obey their clicks (every positive click inside,
            every negative click outside, a negative click on a merged neighbour removes
            it; :mod:`napari_seem.predict.click_refine`). ``"auto"``: as ``connected``.
        find_scale: choose the encoding scale per object from its size (zoom views, so
            small and large objects are decoded at a size the model knows;
            :mod:`napari_seem.predict.scale`). ``"auto"``: as ``connected``. Needs the
            image's pixels (:meth:`set_image`); encodings given by :meth:`set_encoded`
            answer at their own scale.
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
        refine: bool | Literal["auto"] = "auto",
        find_scale: bool | Literal["auto"] = "auto",
    ) -> None:
        self.model = model.eval()
        windowed = getattr(model, "prompt_window", None) is not None
        self.connected = windowed if connected == "auto" else connected
        self.interactive = InteractiveSettings(
            refine=windowed if refine == "auto" else refine,
            find_scale=windowed if find_scale == "auto" else find_scale,
        )
        self.pixels = ImagePixels(None)
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
        self._memory = MaskMemory()

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
    def inference(self) -> Iterator[None]:
        """The context every model call runs in: no gradients, and autocast when the
        predictor was built with ``autocast=`` (e.g. bfloat16 on a GPU)."""
        # no_grad, not inference_mode: cached features are reused in later (plain) calls
        with torch.no_grad():
            if self.autocast is None:
                yield
            else:
                with torch.autocast(self.device.type, dtype=self.autocast):
                    yield

    def frame_for(self, image_hw: tuple[int, int]) -> ModelFrame:
        """How an image of level-0 size ``image_hw`` ``(H, W)`` maps into the padded model
        input of this predictor (its resize rule, the model's fixed size or divisibility)."""
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
        """The current image's encoding (raises RuntimeError before :meth:`set_image`)."""
        if self._encoded is None:
            raise RuntimeError("no image is set: call set_image(image) first")
        return self._encoded

    # ------------------------------------------------------------------ images

    def encode(self, image: npt.ArrayLike) -> EncodedImage:
        """Encode an image without making it current (e.g. a referring example)."""
        return self.encode_many([image])[0]

    def encode_many(
        self, images: Sequence[npt.ArrayLike], *, frame: ModelFrame | None = None
    ) -> list[EncodedImage]:
        """Encode several images of one shape (e.g. tiles) in a single batched forward
        (in ``frame``, default :meth:`frame_for` their shape)."""
        rgbs = [as_rgb_uint8(image) for image in images]
        if not rgbs:
            return []
        if len({rgb.shape for rgb in rgbs}) != 1:
            raise ValueError("encode_many needs images of one shape; encode others separately")
        frame = frame or self.frame_for((rgbs[0].shape[0], rgbs[0].shape[1]))
        batch = torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2).to(self.device)
        with self.inference():
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
        rgb = as_rgb_uint8(image)
        self._encoded = self.encode(rgb)
        self._forget_image(rgb)
        return self._encoded

    def _forget_image(self, rgb: np.ndarray | None) -> None:
        self._memory.clear()
        self.pixels = ImagePixels(rgb)

    @property
    def image_rgb(self) -> np.ndarray | None:
        """``(H, W, 3)`` uint8 pixels of the current image (None after :meth:`set_encoded`)."""
        return self.pixels.rgb

    def grey_image(self) -> np.ndarray | None:
        """``(H, W)`` float32 grey of the current image in [0, 1], or None without pixels."""
        return self.pixels.grey()

    def grey_pyramid(self) -> list[np.ndarray] | None:
        """:func:`~napari_seem.predict.scale.grey_pyramid` of :meth:`grey_image` (cached)."""
        return self.pixels.pyramid()

    def zoom_view(self, box: tuple[int, int, int, int], scale: float) -> View:
        """The current image's level-0 ``box`` encoded at ``scale`` (cached; see
        :func:`napari_seem.predict.views.zoom_view`)."""
        return zoom_view(self, box, scale)

    @property
    def mask_memory(self) -> MaskMemory:
        """The logits of the masks returned on the current image (round-to-round memory)."""
        return self._memory

    def reset_caches(self) -> None:
        """Forget everything computed with the current weights (the image encoding, text
        embeddings, remembered mask logits): call after loading new weights."""
        self._encoded = None
        self._vocabularies.clear()
        self._sentences.clear()
        self._forget_image(None)

    def set_encoded(self, encoded: EncodedImage, image: npt.ArrayLike | None = None) -> None:
        """Make an earlier encoding current (the engine's feature cache uses this); pass
        the encoded ``image`` too to let interactive answers choose their scale."""
        self._encoded = encoded
        self._forget_image(None if image is None else as_rgb_uint8(image))

    def image_memory(self) -> ImageMemory | None:
        """The decoder's cross-attention keys/values of the current image (projected on
        first use, then kept with the encoding)."""
        enc = self.encoded
        if enc.image_memory is None:
            with self.inference():
                memory = self.model.decoder.project_image(enc.features.multi_scale_features)
            enc = EncodedImage(enc.frame, enc.features, memory)
            self._encoded = enc
        return enc.image_memory

    # ------------------------------------------------------------------ text

    def class_embeddings(self, vocabulary: Sequence[str]) -> torch.Tensor:
        """``(K+1, D)`` unit-norm embeddings of ``vocabulary`` + "background" (cached)."""
        key = tuple(clean_names(vocabulary))
        if key not in self._vocabularies:
            with self.inference():
                emb = self.model.text_encoder.class_vocabulary(list(key), self.tokenizer)
            self._vocabularies[key] = emb.float()
        return self._vocabularies[key]

    def sentence_embedding(self, text: str) -> torch.Tensor:
        """``(D,)`` float32 unit-norm embedding of a phrase in the joint space (cached)."""
        if text not in self._sentences:
            with self.inference():
                emb = self.model.text_encoder.sentence_embeddings([text], self.tokenizer)[0]
            self._sentences[text] = emb.float()
        return self._sentences[text]

    # ------------------------------------------------------------------ masks

    def logits_to_masks(self, logits: torch.Tensor) -> np.ndarray:
        """``(N, h, w)`` stride-4 logits in the padded model frame of the current image ->
        ``(N, H, W)`` bool masks at level 0 (resampled by ``mask_resize``, then > 0)."""
        frame = self.encoded.frame
        full = logits_to_image(logits.float(), frame, frame.image_hw, method=self.mask_resize)
        return (full > 0).cpu().numpy()

    # ------------------------------------------------------------------ tasks

    @torch.no_grad()
    def predict(
        self,
        prompts: PromptSet | ObjectPrompt | Sequence[ObjectPrompt],
        *,
        previous: PreviousMasks | None = None,
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
        previous: PreviousMasks | None,
        vocabulary: Sequence[str] | None,
    ) -> list[ObjectMask]:
        visual_objects = [o for o in objects if o.visual]
        if len(visual_objects) != len(objects):
            raise PromptError(
                "an object prompt without visual prompts is a text query: put the text in "
                "PromptSet.texts (all instances) or add a click to it"
            )
        if self.interactive.refine or self.interactive.find_scale:
            items = None if previous is None else list(previous)
            if items is not None and len(items) != len(objects):
                raise PromptError(
                    f"previous has {len(items)} masks but there are {len(objects)} objects: "
                    "pass one previous mask (or None) per object, in the same order"
                )
            return answer_objects(self, objects, items, vocabulary)
        return answer_plain(self, objects, previous, vocabulary)

    def decode_spatial(
        self, pos: np.ndarray, neg: np.ndarray, prev: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode ``(P, H_pad, W_pad)`` bool prompt masks on the current image (and memory
        ``(1, P, h, w)`` stride-4 logits), in prompt windows for models that have them.

        Returns the spatial queries' ``(P*Q, h, w)`` mask logits, ``(P*Q, P)`` selection
        logits (-inf off the prompt's own queries) and ``(P*Q, D)`` caption embeddings
        (see :func:`napari_seem.predict.spatial.decode_spatial`).
        """
        return decode_spatial(self, pos, neg, prev)

    def decode_prompts(
        self,
        features: ImageFeatures,
        pos: np.ndarray,
        neg: np.ndarray,
        prev: torch.Tensor | None,
        image_memory: ImageMemory | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder pass over ``P`` visual prompts in ``features``' frame.

        Call it inside :meth:`inference`.

        Args:
            features: encoded features (batch of one): the current image's or a window of
                them (:func:`napari_seem.model.prompt_window.crop_features`).
            pos, neg: ``(P, H, W)`` bool prompt masks in the model pixels of ``features``.
            prev: ``(1, P, h, w)`` stride-4 memory logits, or None.
            image_memory: :meth:`image_memory` when ``features`` are the whole current
                image (skips projecting it again), else None.

        Returns:
            ``(P*Q, h, w)`` mask logits, ``(P*Q, P)`` selection logits and ``(P*Q, D)``
            caption embeddings of the spatial queries.
        """
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
        """Index of the answering spatial query per object (see
        :func:`napari_seem.predict.spatial.choose_candidates`)."""
        return choose_candidates(self, objects, spatial_logits, captions)

    @torch.no_grad()
    def name_captions(
        self, captions: torch.Tensor, vocabulary: Sequence[str] | None
    ) -> tuple[list[str | None], list[float | None]]:
        """Best class of each caption embedding ``(N, D)`` among ``vocabulary`` (no
        background) and its probability; all None without a vocabulary."""
        if not vocabulary:
            return [None] * len(captions), [None] * len(captions)
        names = clean_names(vocabulary)
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
        found = ground_whole_image(
            self, texts, score_threshold=score_threshold, max_instances=max_instances
        )
        return SegmentationResult(enc.image_shape, tuple(found))

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
        with self.inference():
            tokens = self.model.encode_visual_prompts(
                other.features,
                torch.from_numpy(pos[None, None]).to(self.device),
                torch.from_numpy(neg[None, None]).to(self.device),
            )
            out = self.model.decode(enc.features, visual_prompts=tokens, tasks=("spatial",))
        assert out.prev_mask is not None
        logits = out.prev_mask[0]
        mask = self.logits_to_masks(logits)[0]
        score = mask_score(logits[0])
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
        names = clean_names(vocabulary)
        if mode == "auto":
            mode = "points" if getattr(self.model, "prompt_window", None) else "panoptic"
        if mode == "points":
            found = segment_by_points(self, names, points or PointsSettings())
            kept = tuple(o for o in found if o.area >= min_area)
            return SegmentationResult(self.encoded.image_shape, kept)
        found = segment_by_queries(
            self,
            names,
            mode,
            object_mask_threshold=object_mask_threshold,
            overlap_threshold=overlap_threshold,
            top_k=top_k,
            min_area=min_area,
        )
        return SegmentationResult(self.encoded.image_shape, tuple(found))


def _known(name: str) -> bool:
    try:
        get_config(name)
    except ValueError:
        return False
    return True
