"""prefork: a supervising pre-fork master built on core."""
