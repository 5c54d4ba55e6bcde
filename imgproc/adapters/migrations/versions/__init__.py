"""One file per schema revision, oldest first; each names its ``down_revision``."""
