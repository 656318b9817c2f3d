"""dropzone: one Ark batch inference job per new .jsonl."""

__version__ = "0.1.0"
