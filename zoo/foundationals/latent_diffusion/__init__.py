"""Latent diffusion: UNets, autoencoder and text conditioning for SD 1.5 and SDXL."""
