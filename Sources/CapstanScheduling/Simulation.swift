import CapstanSDK
import Foundation

/// Replays a trace through a scheduling profile on simulated nodes, with the evaluation protocol
/// of the FGD paper: the pod list (in creation order, or shuffled as the paper's simulator
/// effectively does), inflated by random draws (with replacement) until the GPU requested would
/// exceed `inflation` × the cluster's GPU capacity; every pod scheduled once, in order, no
/// preemption, no departures.
public enum Simulation {
    /// The order of the original pod list.
    public enum Order: String, Sendable, Codable, CaseIterable {
        /// By `creation_time`, as the traces' README states the protocol.
        case creation
        /// Sorted by name, then shuffled with the seed. The paper's simulator sorts by creation time
        /// but cannot parse the trace's times (plain integers, not RFC 3339), so its order is its
        /// seeded shuffle of the name-sorted list; this is the same protocol with our generator.
        case shuffled
    }

    /// The pod list in `order`; `seed` drives the shuffle.
    public static func ordered(_ pods: [SchedulingUnit], _ order: Order, seed: UInt64) -> [SchedulingUnit] {
        switch order {
        case .creation:
            return pods
        case .shuffled:
            var result = pods.sorted { $0.name < $1.name }
            // A different stream from the inflation's draws, so the two are independent.
            var generator = SplitMix64(seed: seed ^ 0x5DEE_CE66_D1CE_5EED)
            // Fisher–Yates written out: the standard library's shuffle may change between releases.
            for position in stride(from: result.count - 1, to: 0, by: -1) {
                result.swapAt(position, Int(generator.next() % UInt64(position + 1)))
            }
            return result
        }
    }

    /// One seed's outcome.
    public struct Run: Sendable, Codable, Hashable {
        public var seed: UInt64
        public var pods: Int
        public var placed: Int
        public var failed: Int
        /// Allocated milli-GPU / total milli-GPU.
        public var gpuAllocationRatio: Double
        public var gpuAllocatedMilli: Int64
        public var gpuTotalMilli: Int64
        /// Expected fragmentation (``GPUFragmentation`` under the trace's mix) over the free GPU, at the end.
        public var fragmentationRatio: Double
        /// Wall time of the whole experiment (inflation and scheduling), seconds.
        public var seconds: Double
        /// Decision latency at the 99th percentile, microseconds (histogram bucket bound).
        public var p99DecisionMicroseconds: Double
        /// Time spent inside each plugin's filter and score calls, seconds, by plugin name.
        public var pluginSeconds: [String: Double]
        /// Filter plus score calls (each one batch of nodes), by plugin name.
        public var pluginCalls: [String: Int]
    }

    /// Milli-GPU a pod requests.
    public static func gpuDemand(_ unit: SchedulingUnit) -> Int64 { unit.gpuMilliDemand }

    /// The pod list followed by uniform random draws from it, stopping before the draw that would
    /// take the requested GPU past `factor` × `capacityMilli`. A factor of 0, or a list that asks
    /// for no GPU at all, is returned as it is.
    public static func inflate(_ pods: [SchedulingUnit], capacityMilli: Int64, factor: Double, seed: UInt64) -> [SchedulingUnit] {
        guard factor > 0, pods.contains(where: { gpuDemand($0) > 0 }) else { return pods }
        var generator = SplitMix64(seed: seed)
        let limit = Int64(factor * Double(capacityMilli))
        var result = pods
        var requested = pods.reduce(0) { $0 + gpuDemand($1) }
        while true {
            let pick = pods[Int(generator.next() % UInt64(pods.count))]
            let demand = gpuDemand(pick)
            if requested + demand > limit { break }
            requested += demand
            result.append(pick)
        }
        return result
    }

    /// Runs one experiment.
    /// - Parameter profile: the plugins to place with; each run gets a fresh cluster.
    public static func run(_ trace: ClusterTrace, profile: SchedulingProfile, seed: UInt64, inflation: Double, order: Order = .creation) -> Run {
        let started = ContinuousClock.now
        let framework = SchedulingFramework(profile: profile, nodes: trace.nodes)
        let capacity = framework.cluster.gpuMilli.total
        let workload = WorkloadDistribution(units: trace.pods)
        framework.observe(workload)
        let pods = inflate(ordered(trace.pods, order, seed: seed), capacityMilli: capacity, factor: inflation, seed: seed)
        var placed = 0
        for pod in pods where framework.schedule(pod).placement != nil { placed += 1 }
        let elapsed = ContinuousClock.now - started
        let (total, allocated) = framework.cluster.gpuMilli
        let measure = GPUFragmentation(workload: workload)
        var fragmented = 0.0
        var free: Int64 = 0
        for node in framework.cluster.nodes where !node.gpus.isEmpty {
            fragmented += measure.expected(on: node)
            free += node.freeGPUMilli
        }
        return Run(
            seed: seed, pods: pods.count, placed: placed, failed: pods.count - placed,
            gpuAllocationRatio: total == 0 ? 0 : Double(allocated) / Double(total),
            gpuAllocatedMilli: allocated, gpuTotalMilli: total,
            fragmentationRatio: free == 0 ? 0 : fragmented / Double(free),
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
            p99DecisionMicroseconds: Double(framework.metrics.latency(quantile: 0.99)) / 1000,
            pluginSeconds: framework.metrics.plugins.mapValues { Double($0.nanoseconds) / 1e9 },
            pluginCalls: framework.metrics.plugins.mapValues { $0.filterCalls + $0.scoreCalls })
    }
}
