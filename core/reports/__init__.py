"""HTML reports built from the statistics' result objects (self-contained pages, figures inline)."""
