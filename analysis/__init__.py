"""analysis: loaders and measures over what okex-recorder wrote."""
