"""Shared test settings: quiet progress bars, headless matplotlib, one reproducible seed."""
import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
