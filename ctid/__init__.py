"""ctid."""
