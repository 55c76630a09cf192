"""Hub loading: a handle -> a local SavedModel folder (registry, tfhub.dev, Kaggle, a folder; downloads and the
embedded default's one-time conversion) -> the restored encoder, its signature, its weights fingerprint and a
security audit -> the paired preprocessor (a SavedModel, or one rebuilt from a vocab file)."""
