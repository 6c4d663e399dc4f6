print("benchmarks: see docs/performance.md")
