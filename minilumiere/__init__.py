"""minilumiere: Lumiere (Bar-Tal et al., 2024) re-implemented small, complete and runnable."""
from .config import get_config

__all__ = ["get_config"]
__version__ = "0.1.0"
