"""Processing provider and the QGIS glue shared by every algorithm."""
