"""Speed and quality benchmarks; each script prints a table. `make bench` runs them all."""
