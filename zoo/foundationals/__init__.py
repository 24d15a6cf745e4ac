"""Foundation models built as fluxion chains, each driven by a frozen config dataclass."""
