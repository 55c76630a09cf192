"""hubembed: contextual embeddings from TensorFlow Hub BERT-family encoders."""
__version__ = "0.1.0"
