"""Research tools built on the library: benchmarking, and more to come."""
