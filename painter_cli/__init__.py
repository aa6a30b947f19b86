"""painter: in-context visual learning (a clean reimplementation of Painter, CVPR 2023)."""

__version__ = "0.1.0"
