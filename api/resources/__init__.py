"""HTTP resources: each authenticates through the pipeline and calls one SQL function."""
