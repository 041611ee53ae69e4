"""Numerical operations outside the network: MATLAB-exact resize and the fine stage (back-projection)."""
