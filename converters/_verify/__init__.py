"""`zoo verify`: hashes, byte-for-byte reproduction and parity of converted outputs, against their manifest."""
