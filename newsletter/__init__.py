"""newsletter: compose the weekly bilingual ML-papers digest from Markdown and send it by email."""

__version__ = "0.1.0"
