"""A maze-solving policy, its goal misgeneralization, and the cheese vector (steering a non-language network)."""
