"""IP-Adapter: image prompts for the latent diffusion UNets (image projections, decoupled cross-attention)."""
