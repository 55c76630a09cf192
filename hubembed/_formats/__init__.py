"""Model formats hubembed reads and writes: Hub weight names and the BERT forward pass in plain TF ops, the
Hub-format SavedModel writers (TF2 dict and list style, TF1 modules), and the Hugging Face -> Hub conversion."""
