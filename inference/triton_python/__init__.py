"""Python-backend model code shipped into the Triton model repository."""
