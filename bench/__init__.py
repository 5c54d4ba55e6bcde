"""``make bench``: every figure of the system as a ratio to the model's raw inference, measured in one run."""
