"""imgproc: a self-hosted image-processing queue."""
