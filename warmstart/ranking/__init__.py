"""Which source? Rank candidate sources cheaply on the target's k-shot train and validation
images (frozen features, one pass), before the full protocol runs on the best of them."""
