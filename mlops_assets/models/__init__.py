"""Model training, evaluation and the model artifact."""
