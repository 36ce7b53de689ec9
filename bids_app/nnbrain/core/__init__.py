"""Pure numerics on arrays: no nipype, no pybids, no file paths, no settings."""
