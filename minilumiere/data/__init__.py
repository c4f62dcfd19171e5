"""The toy captioned-video world and the oracle that reads captions back from clips."""
from .oracle import read_caption
from .toyvideos import (BACKGROUND, COLORS, DIRECTIONS, GRAMMAR, HELDOUT, SHAPES, STYLES,
                        ToyVideos, captions, parse_caption, render_cinemagraph, render_clip,
                        to_tensor, to_uint8)

__all__ = ["BACKGROUND", "COLORS", "DIRECTIONS", "GRAMMAR", "HELDOUT", "SHAPES", "STYLES",
           "ToyVideos", "captions", "parse_caption", "read_caption", "render_cinemagraph",
           "render_clip", "to_tensor", "to_uint8"]
