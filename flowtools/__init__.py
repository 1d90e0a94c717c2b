"""Tools that drive the product from outside: simulators, the pipeline harness, chaos and benchmarks."""
