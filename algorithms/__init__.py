"""One QgsProcessingAlgorithm per module; each is a thin layer over core/."""
