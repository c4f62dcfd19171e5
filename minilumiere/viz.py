"""Pictures and videos: frame grids (matplotlib), embedded videos (mediapy), files.

Clips at the user-facing edge are (T, H, W, 3) uint8. Toy clips are tiny (16 px), so
everything shown is enlarged with nearest-neighbour `upscale` first: pixels stay pixels.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib
import numpy as np


def upscale(clip: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of a (..., H, W, C) array by an integer factor."""
    if factor == 1:
        return clip
    return clip.repeat(factor, axis=-3).repeat(factor, axis=-2)


def display_size(clip: np.ndarray, target: int = 128) -> np.ndarray:
    """Enlarge a clip so its width is about `target` pixels (never shrinks)."""
    return upscale(clip, max(1, target // clip.shape[-2]))


def frame_grid(clips, titles=None, max_frames: int = 8, frame_size: float = 0.9):
    """A matplotlib Figure: one row per clip, up to `max_frames` evenly spaced frames.

    clips: a (T, H, W, 3) uint8 array or a list of them (same T not required).
    """
    clips = [clips] if isinstance(clips, np.ndarray) and clips.ndim == 4 else list(clips)
    import matplotlib.pyplot as plt

    columns = min(max_frames, max(len(c) for c in clips))
    fig, axes = plt.subplots(len(clips), columns, squeeze=False,
                             figsize=(frame_size * columns + (1.8 if titles else 0),
                                      frame_size * len(clips)))
    for row, clip in enumerate(clips):
        picks = np.linspace(0, len(clip) - 1, min(columns, len(clip))).round().astype(int)
        for column, ax in enumerate(axes[row]):
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if column < len(picks):
                ax.imshow(clip[picks[column]], interpolation="nearest")
                if row == 0:
                    ax.set_title(f"frame {picks[column]}", fontsize=7)
        if titles:
            axes[row][0].set_ylabel(titles[row], rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.2)
    return fig


def save_frame_grid(clips, path, titles=None, max_frames: int = 8) -> Path:
    """Render `frame_grid` to a PNG file and return its path."""
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig = frame_grid(clips, titles, max_frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def use_bundled_ffmpeg() -> None:
    """Point mediapy at the ffmpeg of the imageio-ffmpeg wheel when the system has none."""
    import mediapy

    if shutil.which("ffmpeg") is None:
        import imageio_ffmpeg

        mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())


def show_clips(clips, titles=None, fps: int = 8, size: int = 128, columns: int = 6) -> None:
    """Show clips side by side as looping GIFs embedded in the notebook (the book keeps them)."""
    import mediapy

    use_bundled_ffmpeg()
    clips = [clips] if isinstance(clips, np.ndarray) and clips.ndim == 4 else list(clips)
    enlarged = [display_size(c, size) for c in clips]
    if titles is None:
        mediapy.show_videos(enlarged, fps=fps, codec="gif", columns=columns)
    else:
        mediapy.show_videos(dict(zip(titles, enlarged)), fps=fps, codec="gif", columns=columns)


def read_video(path, size: int) -> np.ndarray:
    """A video file (.mp4 or .gif, as `write_video` writes them, or a .npy array) as a
    (T, size, size, 3) uint8 clip: square frames whose side is a multiple of `size`,
    area-averaged down to it (a clip `write_video` enlarged comes back at its own size)."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video at {path}")
    if path.suffix == ".npy":
        clip = np.load(path, allow_pickle=False)
    else:                             # imageio-ffmpeg's reader, with the ffmpeg its wheel ships
        frames = imageio_ffmpeg.read_frames(str(path))
        width, height = next(frames)["size"]
        clip = np.stack([np.frombuffer(frame, np.uint8).reshape(height, width, 3)
                         for frame in frames])
    if clip.ndim != 4 or clip.shape[-1] != 3 or clip.dtype != np.uint8:
        raise ValueError(f"{path} holds an array of shape {clip.shape} and dtype {clip.dtype}; "
                         f"a clip is (T, H, W, 3) uint8")
    side = clip.shape[1]
    if side != clip.shape[2] or side % size:
        raise ValueError(f"{path} has {clip.shape[1]}x{clip.shape[2]} frames; accepted: square "
                         f"frames whose side is a multiple of {size} px")
    factor = side // size
    blocks = clip.reshape(len(clip), size, factor, size, factor, 3).astype(np.float64)
    return np.round(blocks.mean(axis=(2, 4))).astype(np.uint8)


def write_video(path, clip: np.ndarray, fps: int = 8, size: int = 256) -> Path:
    """Write a clip to .mp4 or .gif (by suffix), enlarged to about `size` pixels wide."""
    import mediapy

    path = Path(path)
    if path.suffix not in (".mp4", ".gif"):
        raise ValueError(f"video path {str(path)!r} must end in .mp4 or .gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    use_bundled_ffmpeg()
    codec = "h264" if path.suffix == ".mp4" else "gif"
    mediapy.write_video(path, display_size(clip, size), fps=fps, codec=codec)
    return path
