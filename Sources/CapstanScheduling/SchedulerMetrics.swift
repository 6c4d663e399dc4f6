/// What the framework measured: per-plugin call counts and time, decisions and their latency.
public struct SchedulerMetrics: Sendable {
    public struct PluginTiming: Sendable, Hashable {
        public var filterCalls = 0
        public var scoreCalls = 0
        public var reserveFailures = 0
        public var nanoseconds: Int64 = 0
    }

    /// By plugin name.
    public var plugins: [String: PluginTiming] = [:]
    public var scheduled = 0
    public var unschedulable = 0
    /// Decision latency histogram: bucket `i` counts decisions under `latencyBounds[i]` ns.
    public var latencyBuckets = [Int](repeating: 0, count: SchedulerMetrics.latencyBounds.count + 1)

    /// 1 µs … ~10 s, ×1.25 per bucket.
    public static let latencyBounds: [Int64] = {
        var bounds: [Int64] = []
        var value = 1000.0
        while value < 1e10 {
            bounds.append(Int64(value))
            value *= 1.25
        }
        return bounds
    }()

    mutating func recordDecision(nanoseconds: Int64) {
        var low = 0, high = SchedulerMetrics.latencyBounds.count
        while low < high {
            let middle = (low + high) / 2
            if SchedulerMetrics.latencyBounds[middle] > nanoseconds { high = middle } else { low = middle + 1 }
        }
        latencyBuckets[low] += 1
    }

    /// The latency under which `quantile` (0...1) of decisions fell, as a bucket bound in ns.
    public func latency(quantile: Double) -> Int64 {
        let total = latencyBuckets.reduce(0, +)
        guard total > 0 else { return 0 }
        var seen = 0
        for (index, count) in latencyBuckets.enumerated() {
            seen += count
            if Double(seen) >= quantile * Double(total) {
                return index < SchedulerMetrics.latencyBounds.count ? SchedulerMetrics.latencyBounds[index] : Int64.max
            }
        }
        return Int64.max
    }
}
