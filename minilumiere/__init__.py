"""minilumiere: Lumiere (Bar-Tal et al., 2024) re-implemented small, complete and runnable."""
from .config import get_config
from .pipeline import load_pipeline

__all__ = ["get_config", "load_pipeline"]
__version__ = "0.1.0"
