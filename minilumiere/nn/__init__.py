"""The networks: the text-to-image U-Net, the Space-Time U-Net and inflation."""
from .stunet import STUNet, inflate, per_frame
from .unet2d import UNet2D

__all__ = ["STUNet", "UNet2D", "inflate", "per_frame"]
