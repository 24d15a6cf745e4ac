"""Key prefixes of Stability's original single-file checkpoints, and why some of their keys are not converted.

Both the SGM layout (SDXL) and the LDM layout (SD 1.x) keep the UNet under `model.diffusion_model.`
and the VAE under `first_stage_model.`; where the text encoders sit differs, and each family's folder
says so.
"""

from __future__ import annotations

UNET_PREFIX = "model.diffusion_model."
EMA_PREFIX = "model_ema."
VAE_PREFIX = "first_stage_model."

EMA_REASON = (
    "EMA copy of the UNet weights: like diffusers (extract_ema=False), zoo converts the non-EMA "
    "`model.diffusion_model.*` weights"
)
LOGIT_SCALE_REASON = (
    "OpenCLIP's temperature of the image-text contrastive loss: the text tower does not use it "
    "(diffusers drops it too)"
)


__all__ = ["EMA_PREFIX", "EMA_REASON", "LOGIT_SCALE_REASON", "UNET_PREFIX", "VAE_PREFIX"]
