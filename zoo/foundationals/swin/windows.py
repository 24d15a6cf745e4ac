"""Shifted windows: how Swin cuts a feature map into windows and puts it back together.

A (B, H, W, C) feature map is padded at the bottom and right to whole windows, rolled up and left by
`shift` in shifted blocks, and cut into (B, windows, window², C) groups of tokens that attend among
themselves. The roll lets a block's windows straddle the previous block's window borders; tokens the
roll brought together from opposite edges of the map must not attend to each other, which the shift
mask says by adding -100 to their scores (the value every reference implementation uses).

Sizes follow transformers' `SwinLayer`, a per-input version of the original code's rule: when the
shorter side of the feature map is no longer than the window, the window is that side and nothing is
shifted (the last stage of a 224-pixel Swin-T is exactly one 7×7 window). A feature map shorter than
the window is refused: the learned position table is for whole windows (transformers fails there).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch.nn import functional as F

MASKED = -100.0  # added to the scores of token pairs from different shift regions
CACHED_INDICES = 16  # (window, device) pairs: a model uses one window, on one or two devices
SHIFT_REGIONS = 3  # per axis: before the last window, inside it before the roll seam, after the seam


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _roll(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Rolls the two spatial dimensions of (B, H, W, C) by `shift` (a no-op for 0)."""
    return torch.roll(x, shifts=(shift, shift), dims=(1, 2)) if shift else x


@dataclass(frozen=True)
class WindowPlan:
    """How one block windows a feature map of a given size.

    Attributes:
        height: Rows of the feature map (before padding).
        width: Columns of the feature map (before padding).
        window: Side of a window, in tokens.
        shift: How far the map is rolled up and left before windowing (0: regular windows).
    """

    height: int
    width: int
    window: int
    shift: int

    @classmethod
    def for_feature_map(cls, height: int, width: int, window: int, shift: int) -> WindowPlan:
        """The plan of a block with this window and shift for an (height, width) map.

        Raises:
            ValueError: The map is shorter than the window along a side.
        """
        shortest = min(height, width)
        if shortest < window:
            raise ValueError(
                f"a {height}x{width} feature map is smaller than the {window}x{window} attention window: "
                "give Swin a larger image (every stage must be at least one window high and wide)"
            )
        return cls(height, width, window, 0 if shortest == window else shift)

    @property
    def padded_height(self) -> int:
        return _round_up(self.height, self.window)

    @property
    def padded_width(self) -> int:
        return _round_up(self.width, self.window)

    @property
    def tokens(self) -> int:
        """Tokens in one window."""
        return self.window * self.window

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) → (B, windows, window², C): padded, rolled, then cut in row-major order."""
        pad_rows, pad_columns = self.padded_height - self.height, self.padded_width - self.width
        x = _roll(F.pad(x, (0, 0, 0, pad_columns, 0, pad_rows)), -self.shift)
        batch, channels, side = x.shape[0], x.shape[-1], self.window
        grid = x.view(batch, self.padded_height // side, side, self.padded_width // side, side, channels)
        return grid.transpose(2, 3).reshape(batch, -1, self.tokens, channels)

    def merge(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, windows, window², C) → (B, H, W, C): the inverse of `partition`."""
        batch, channels, side = windows.shape[0], windows.shape[-1], self.window
        grid = windows.view(
            batch, self.padded_height // side, self.padded_width // side, side, side, channels
        )
        x = grid.transpose(2, 3).reshape(batch, self.padded_height, self.padded_width, channels)
        return _roll(x, self.shift)[:, : self.height, : self.width]

    def shift_mask(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """(windows, window², window²): `MASKED` between tokens of different shift regions; None unshifted."""
        if not self.shift:
            return None
        rows = self._regions(self.padded_height, device)
        columns = self._regions(self.padded_width, device)
        regions = (rows[:, None] * SHIFT_REGIONS + columns[None, :])[None, :, :, None]
        grouped = WindowPlan(self.padded_height, self.padded_width, self.window, 0).partition(regions)
        grouped = grouped.view(-1, self.tokens)
        apart = grouped[:, None, :] != grouped[:, :, None]
        return torch.zeros(apart.shape, device=device, dtype=dtype).masked_fill(apart, MASKED)

    def _regions(self, size: int, device: torch.device) -> torch.Tensor:
        """Region of each row (or column) of the rolled map: 0 before the last window, 1 and 2 around the seam."""
        index = torch.arange(size, device=device)
        return (index >= size - self.window).long() + (index >= size - self.shift).long()


@functools.lru_cache(maxsize=CACHED_INDICES)
def relative_position_index(window: int, device: torch.device | None = None) -> torch.Tensor:
    """(window², window²) row of the position table for each pair of tokens in a window (do not modify).

    Token i attends to token j with the bias learned for their offset (row_i - row_j, col_i - col_j),
    both in [-(window - 1), window - 1]; the table lists offsets row-major. Cached: every block of a
    model asks for the same one.
    """
    rows, columns = torch.meshgrid(
        torch.arange(window, device=device), torch.arange(window, device=device), indexing="ij"
    )
    rows, columns = rows.flatten(), columns.flatten()
    row_offsets = rows[:, None] - rows[None, :] + window - 1
    column_offsets = columns[:, None] - columns[None, :] + window - 1
    return row_offsets * (2 * window - 1) + column_offsets


__all__ = ["MASKED", "WindowPlan", "relative_position_index"]
