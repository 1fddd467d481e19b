"""Training data: corpus readers, cleaning and mixing, synthetic noise, and the dataset on disk."""
