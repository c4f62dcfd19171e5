"""Captions -> token ids -> per-token embeddings `context` (B, L, D) for cross-attention.

The toy model uses a word-level tokenizer over the toy grammar's vocabulary and a small
transformer encoder trained together with the denoiser. The empty caption "" is the
unconditional input of classifier-free guidance: just <bos> and padding.

The seam for a pretrained encoder: anything with `encode(captions) -> (context, mask)`
works as a text encoder. `build_text_encoder(cfg.text)` returns the toy encoder for
`encoder="toy"` and a frozen `PretrainedT5Encoder` for `encoder="t5:<name>"` (optional:
needs the `transformers` package and, the first time, the network to fetch weights).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import TextConfig
from .data.toyvideos import COLORS, DIRECTIONS, SHAPES

PAD, BOS = "<pad>", "<bos>"
VOCABULARY = (PAD, BOS, "a", "moving", *COLORS, *SHAPES, *DIRECTIONS)


class Tokenizer:
    """Word-level tokenizer: "a red circle" -> [<bos>, a, red, circle, <pad>, ...] ids."""

    def __init__(self, max_len: int = 8, vocabulary: tuple[str, ...] = VOCABULARY):
        self.vocabulary = vocabulary
        self.ids = {word: i for i, word in enumerate(vocabulary)}
        self.max_len = max_len

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """captions (B,) -> token ids (B, L) long and a mask (B, L) bool, True on real tokens."""
        if isinstance(captions, str):
            captions = [captions]
        rows = [self.encode_one(caption) for caption in captions]
        ids = torch.full((len(rows), self.max_len), self.ids[PAD], dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return ids, ids != self.ids[PAD]

    def encode_one(self, caption: str) -> list[int]:
        words = caption.lower().split()
        unknown = [w for w in words if w not in self.ids or w in (PAD, BOS)]
        if unknown:
            raise ValueError(f"unknown word {unknown[0]!r} in caption {caption!r}; the vocabulary "
                             f"is {list(self.vocabulary[2:])}")
        if len(words) + 1 > self.max_len:
            raise ValueError(f"caption {caption!r} has {len(words)} words; at most "
                             f"{self.max_len - 1} fit (text max_len={self.max_len})")
        return [self.ids[BOS]] + [self.ids[w] for w in words]


class ToyTextEncoder(nn.Module):
    """A small transformer encoder: token + position embeddings, pre-norm layers, final norm."""

    def __init__(self, cfg: TextConfig):
        super().__init__()
        self.tokenizer = Tokenizer(cfg.max_len)
        self.token_embedding = nn.Embedding(len(VOCABULARY), cfg.dim)
        self.position_embedding = nn.Parameter(torch.randn(cfg.max_len, cfg.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 4 * cfg.dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask (B, L) -> context (B, L, D)."""
        x = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]
        return self.norm(self.layers(x, src_key_padding_mask=~mask))

    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """captions (B,) -> context (B, L, D), mask (B, L)."""
        ids, mask = self.tokenizer(captions)
        device = self.position_embedding.device
        ids, mask = ids.to(device), mask.to(device)
        return self(ids, mask), mask


class PretrainedT5Encoder(nn.Module):
    """Optional: a frozen pretrained T5 encoder (as Imagen and Lumiere use), via `transformers`.

    Never needed by the toy path. Downloads the weights on first use unless cached.
    """

    def __init__(self, name: str, max_len: int):
        super().__init__()
        try:
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError as error:
            raise ImportError("text encoder 't5:...' needs `pip install transformers "
                              "sentencepiece`; the toy config uses encoder='toy'") from error
        self.tokenizer = AutoTokenizer.from_pretrained(name)
        self.model = T5EncoderModel.from_pretrained(name).requires_grad_(False).eval()
        self.max_len = max_len

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer(list(captions), padding="max_length", truncation=True,
                               max_length=self.max_len, return_tensors="pt")
        batch = batch.to(self.model.device)
        context = self.model(**batch).last_hidden_state
        return context, batch["attention_mask"].bool()


def build_text_encoder(cfg: TextConfig) -> nn.Module:
    """The encoder a config names: "toy" or "t5:<huggingface model name>"."""
    if cfg.encoder == "toy":
        return ToyTextEncoder(cfg)
    if cfg.encoder.startswith("t5:"):
        return PretrainedT5Encoder(cfg.encoder[3:], cfg.max_len)
    raise ValueError(f"text encoder {cfg.encoder!r}; choose 'toy' or 't5:<model name>'")
