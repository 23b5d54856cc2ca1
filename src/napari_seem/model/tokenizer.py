"""CLIP's byte-level BPE tokenizer, as SEEM's text encoder expects it.

Text is cleaned (NFC, HTML entities decoded twice, whitespace collapsed, lower-cased),
split into words with CLIP's pre-tokenisation pattern, each word's UTF-8 bytes are mapped
to printable stand-in characters and merged pairwise by rank; the last symbol of a word
carries the ``</w>`` end-of-word marker. A text becomes ``[SOT] + bpe ids + [EOT]`` padded
with EOT to the context length (77); at most ``context - 2`` BPE ids are kept. This equals
Hugging Face ``CLIPTokenizer("openai/clip-vit-base-patch32", padding="max_length",
truncation=True, max_length=77)`` and open_clip's ``SimpleTokenizer`` for ASCII text.

The vocabulary is never bundled. :func:`load_clip_tokenizer` looks, in order, at an explicit
path, the Hugging Face cache (``openai/clip-vit-base-patch32``), the merges file inside an
installed ``open_clip_torch`` distribution (found without importing open_clip), and finally
the Hugging Face hub.
"""

from __future__ import annotations

import gzip
import html
import importlib.metadata
import itertools
import json
import os
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import regex
import torch

__all__ = [
    "ClipTokenizer",
    "TokenizedText",
    "TokenizerNotFound",
    "load_clip_tokenizer",
]

HF_REPO_ID = "openai/clip-vit-base-patch32"
OPEN_CLIP_DISTRIBUTION = "open_clip_torch"
OPEN_CLIP_MERGES = "open_clip/bpe_simple_vocab_16e6.txt.gz"
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# CLIP's vocabulary: 256 byte symbols, the same 256 with </w>, 48,894 merges, SOT and EOT.
CLIP_VOCAB_SIZE = 49408
_NUM_CLIP_MERGES = CLIP_VOCAB_SIZE - 2 * 256 - 2
# Word cache per tokenizer; cleared when full so a long session cannot grow without bound.
_MAX_CACHED_WORDS = 100_000

# CLIP pre-tokenisation: the two special tokens, English contractions, runs of letters,
# single digits, and runs of anything that is neither space, letter nor digit.
_WORD_PATTERN = regex.compile(
    "|".join(
        (
            regex.escape(SOT_TOKEN),
            regex.escape(EOT_TOKEN),
            "'s|'t|'re|'ve|'m|'ll|'d",
            r"[\p{L}]+",
            r"[\p{N}]",
            r"[^\s\p{L}\p{N}]+",
        )
    ),
    regex.IGNORECASE,
)
_WHITESPACE = regex.compile(r"\s+")


class TokenizerNotFound(FileNotFoundError):
    """No CLIP BPE vocabulary could be found; the message lists the ways to provide one."""


@dataclass(frozen=True)
class TokenizedText:
    """A batch of tokenized texts.

    Attributes:
        input_ids: ``(N, context)`` int64 token ids: SOT (49406), the BPE ids, EOT (49407),
            then EOT as padding.
        attention_mask: ``(N, context)`` int64, 1 on SOT..EOT (inclusive), 0 on padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


def _byte_alphabet() -> list[tuple[int, str]]:
    """CLIP's 256 byte symbols as ``(byte, symbol)`` pairs, in vocabulary order.

    Bytes that are printable Latin-1 characters (other than space and soft hyphen) come
    first and stand for themselves; the remaining bytes follow in increasing order with
    consecutive code points from U+0100, so that no symbol is whitespace or a control.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    taken = set(printable)
    others = [b for b in range(256) if b not in taken]
    return [(b, chr(b)) for b in printable] + [(b, chr(0x100 + k)) for k, b in enumerate(others)]


def clean_text(text: str) -> str:
    """Normalise text the way CLIP's tokenizer does before splitting it into words.

    NFC normalisation stands in for ``ftfy.fix_text`` (which is not a dependency; it
    changes nothing for well-formed text), then HTML entities are decoded twice (doubly
    escaped input occurs in web captions), whitespace runs become one space, the ends are
    stripped and everything is lower-cased.
    """
    text = unicodedata.normalize("NFC", text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


class ClipTokenizer:
    """CLIP byte-level BPE tokenizer (call it on a list of strings).

    Args:
        encoder: token string -> id, including the byte symbols, their ``</w>`` forms,
            every merge result and the two special tokens.
        merges: symbol pairs in priority order (earlier merges first).
        context_length: length of every output row (77 for SEEM).
    """

    def __init__(
        self,
        encoder: Mapping[str, int],
        merges: Sequence[tuple[str, str]],
        *,
        context_length: int = 77,
    ) -> None:
        missing = [t for t in (SOT_TOKEN, EOT_TOKEN) if t not in encoder]
        if missing:
            raise ValueError(f"CLIP vocabulary lacks the special tokens {missing}")
        if context_length < 2:
            raise ValueError(f"context_length must be at least 2, got {context_length}")
        self.encoder: dict[str, int] = dict(encoder)
        self.ranks: dict[tuple[str, str], int] = {pair: r for r, pair in enumerate(merges)}
        self.context_length = context_length
        self.sot_id = self.encoder[SOT_TOKEN]
        self.eot_id = self.encoder[EOT_TOKEN]
        self._byte_table = dict(_byte_alphabet())
        # Special tokens written literally in the text map to themselves, as in CLIP.
        self._word_cache: dict[str, tuple[str, ...]] = {
            SOT_TOKEN: (SOT_TOKEN,),
            EOT_TOKEN: (EOT_TOKEN,),
        }

    @classmethod
    def from_open_clip_merges(cls, path: str | Path, *, context_length: int = 77) -> ClipTokenizer:
        """Build from open_clip's ``bpe_simple_vocab_16e6.txt.gz``.

        The file holds a version line and then more merges than CLIP uses; the first
        48,894 define the vocabulary, whose ids follow from their order.
        """
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        merges = [_parse_merge(line) for line in lines[1 : 1 + _NUM_CLIP_MERGES]]
        if len(merges) != _NUM_CLIP_MERGES:
            raise ValueError(f"{path}: {len(merges)} merges, expected {_NUM_CLIP_MERGES}")
        symbols = [symbol for _, symbol in _byte_alphabet()]
        tokens = [*symbols, *(s + END_OF_WORD for s in symbols)]
        tokens += ["".join(pair) for pair in merges]
        tokens += [SOT_TOKEN, EOT_TOKEN]
        encoder = {tok: i for i, tok in enumerate(tokens)}
        return cls(encoder, merges, context_length=context_length)

    @classmethod
    def from_vocab_and_merges(
        cls, vocab_json: str | Path, merges_txt: str | Path, *, context_length: int = 77
    ) -> ClipTokenizer:
        """Build from a Hugging Face ``vocab.json`` (token -> id) and ``merges.txt`` pair."""
        encoder = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        lines = Path(merges_txt).read_text(encoding="utf-8").split("\n")
        merges = [_parse_merge(line) for line in lines if line and not line.startswith("#")]
        return cls(encoder, merges, context_length=context_length)

    @property
    def vocab_size(self) -> int:
        """Number of token ids (49,408 for CLIP)."""
        return len(self.encoder)

    def encode(self, text: str) -> list[int]:
        """BPE ids of one text, without SOT/EOT and without truncation."""
        ids: list[int] = []
        for word in _WORD_PATTERN.findall(clean_text(text)):
            symbols = "".join(self._byte_table[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self._bpe(symbols))
        return ids

    def __call__(self, texts: Sequence[str]) -> TokenizedText:
        """Tokenize a batch of texts into fixed-length rows.

        Args:
            texts: ``N`` strings (a bare ``str`` is refused: it would be read as characters).

        Returns:
            :class:`TokenizedText` with ``(N, context_length)`` int64 ``input_ids`` and
            ``attention_mask`` on the CPU.
        """
        if isinstance(texts, str):
            raise TypeError("ClipTokenizer expects a sequence of strings, not a single str")
        n, ctx = len(texts), self.context_length
        input_ids = torch.full((n, ctx), self.eot_id, dtype=torch.int64)
        attention_mask = torch.zeros((n, ctx), dtype=torch.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text)[: ctx - 2], self.eot_id]
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
            attention_mask[row, : len(ids)] = 1
        return TokenizedText(input_ids=input_ids, attention_mask=attention_mask)

    def _bpe(self, word: str) -> tuple[str, ...]:
        """Merge the symbols of one word (byte symbols, no spaces) into vocabulary pieces."""
        cached = self._word_cache.get(word)
        if cached is not None:
            return cached
        pieces = [*word[:-1], word[-1] + END_OF_WORD]
        while len(pieces) > 1:
            ranked = [
                (self.ranks[pair], pair)
                for pair in itertools.pairwise(pieces)
                if pair in self.ranks
            ]
            if not ranked:
                break
            _, (left, right) = min(ranked)
            merged: list[str] = []
            i = 0
            # Merge every non-overlapping occurrence of the best pair, left to right.
            while i < len(pieces):
                if i + 1 < len(pieces) and pieces[i] == left and pieces[i + 1] == right:
                    merged.append(left + right)
                    i += 2
                else:
                    merged.append(pieces[i])
                    i += 1
            pieces = merged
        result = tuple(pieces)
        if len(self._word_cache) >= _MAX_CACHED_WORDS:
            self._word_cache = {SOT_TOKEN: (SOT_TOKEN,), EOT_TOKEN: (EOT_TOKEN,)}
        self._word_cache[word] = result
        return result


def _parse_merge(line: str) -> tuple[str, str]:
    parts = line.split()
    if len(parts) != 2:
        raise ValueError(f"malformed BPE merge line {line!r}")
    return parts[0], parts[1]


def _from_path(path: Path) -> ClipTokenizer:
    """Tokenizer from an explicit file or folder; raise :class:`TokenizerNotFound` if unusable."""
    if path.is_dir():
        if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            return ClipTokenizer.from_vocab_and_merges(path / "vocab.json", path / "merges.txt")
        gz = path / Path(OPEN_CLIP_MERGES).name
        if gz.is_file():
            return ClipTokenizer.from_open_clip_merges(gz)
    elif path.is_file():
        if path.name.endswith(".gz"):
            return ClipTokenizer.from_open_clip_merges(path)
        if path.name in ("vocab.json", "merges.txt"):
            vocab, merges = path.with_name("vocab.json"), path.with_name("merges.txt")
            if vocab.is_file() and merges.is_file():
                return ClipTokenizer.from_vocab_and_merges(vocab, merges)
    raise TokenizerNotFound(
        f"{path} is not a CLIP BPE vocabulary: give open_clip's "
        f"{Path(OPEN_CLIP_MERGES).name}, or a folder (or either file) of a Hugging Face "
        "vocab.json + merges.txt pair"
    )


def _hub_is_offline() -> bool:
    return any(
        os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _hugging_face_files(*, local_only: bool) -> tuple[Path, Path] | str:
    """``(vocab.json, merges.txt)`` of ``openai/clip-vit-base-patch32``, or why not.

    With ``local_only`` only the local cache is searched (instant, no network). Otherwise the
    hub is asked, unless ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set.
    """
    if not local_only and _hub_is_offline():
        return "HF_HUB_OFFLINE is set: only the local cache was searched"
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return "huggingface_hub is not installed"
    try:
        vocab = hf_hub_download(HF_REPO_ID, "vocab.json", local_files_only=local_only)
        merges = hf_hub_download(HF_REPO_ID, "merges.txt", local_files_only=local_only)
    except Exception as err:  # any hub, cache or network failure means "not available"
        return f"{type(err).__name__}: {err}".splitlines()[0]
    return Path(vocab), Path(merges)


def _open_clip_merges_file() -> Path | str:
    """The merges file shipped in an installed ``open_clip_torch`` (not imported), or why not."""
    try:
        dist = importlib.metadata.distribution(OPEN_CLIP_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return f"{OPEN_CLIP_DISTRIBUTION} is not installed"
    path = Path(str(dist.locate_file(OPEN_CLIP_MERGES)))
    if not path.is_file():
        return f"{OPEN_CLIP_DISTRIBUTION} is installed but {OPEN_CLIP_MERGES} is missing"
    return path


def load_clip_tokenizer(path: str | Path | None = None) -> ClipTokenizer:
    """Find a CLIP BPE vocabulary and build the tokenizer.

    Args:
        path: optional explicit source: open_clip's ``bpe_simple_vocab_16e6.txt.gz``, a
            Hugging Face ``vocab.json`` or ``merges.txt`` (its sibling is used too), or a
            folder holding either form. When given, no other source is tried.

    Without a path, these are tried in order: the Hugging Face cache of
    ``openai/clip-vit-base-patch32``; the merges file of an installed ``open_clip_torch``
    (both local and instant); the Hugging Face hub, unless ``HF_HUB_OFFLINE`` is set. The
    hub comes last because ``huggingface_hub`` retries an unreachable network for about
    20 s before giving up, and all three hold the same vocabulary.

    Raises:
        TokenizerNotFound: no source is available; the message names the three ways to
            provide the vocabulary and why each automatic source failed.
    """
    if path is not None:
        return _from_path(Path(path).expanduser())
    cached = _hugging_face_files(local_only=True)
    if not isinstance(cached, str):
        return ClipTokenizer.from_vocab_and_merges(*cached)
    wheel = _open_clip_merges_file()
    if not isinstance(wheel, str):
        return ClipTokenizer.from_open_clip_merges(wheel)
    hub = _hugging_face_files(local_only=False)
    if not isinstance(hub, str):
        return ClipTokenizer.from_vocab_and_merges(*hub)
    raise TokenizerNotFound(
        "No CLIP BPE vocabulary found. Provide it in one of three ways:\n"
        "  1. pass a path: load_clip_tokenizer('.../bpe_simple_vocab_16e6.txt.gz'), or a "
        "folder holding Hugging Face vocab.json + merges.txt;\n"
        f"  2. put {HF_REPO_ID} in the Hugging Face cache (e.g. `hf download {HF_REPO_ID} "
        "vocab.json merges.txt`), or unset HF_HUB_OFFLINE so it can be downloaded;\n"
        f"  3. install {OPEN_CLIP_DISTRIBUTION}, which ships {OPEN_CLIP_MERGES}.\n"
        f"Hugging Face cache: {cached}\n"
        f"Hugging Face hub: {hub}\n"
        f"{OPEN_CLIP_DISTRIBUTION}: {wheel}"
    )
