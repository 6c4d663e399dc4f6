import CapstanSDK
import Foundation

/// Replays a trace through a scheduling profile on simulated nodes, with the evaluation protocol
/// of the FGD paper: the pod list in creation order, inflated by random draws (with replacement)
/// until the GPU requested would exceed `inflation` × the cluster's GPU capacity; every pod
/// scheduled once, in order, no preemption, no departures.
public enum Simulation {
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
    }

    /// Milli-GPU a pod requests.
    public static func gpuDemand(_ unit: SchedulingUnit) -> Int64 { unit.gpuMilliDemand }

    /// The pod list followed by uniform random draws from it, stopping before the draw that would
    /// take the requested GPU past `factor` × `capacityMilli`.
    public static func inflate(_ pods: [SchedulingUnit], capacityMilli: Int64, factor: Double, seed: UInt64) -> [SchedulingUnit] {
        guard !pods.isEmpty else { return [] }
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
    public static func run(_ trace: ClusterTrace, profile: SchedulingProfile, seed: UInt64, inflation: Double) -> Run {
        let started = ContinuousClock.now
        let framework = SchedulingFramework(profile: profile, nodes: trace.nodes)
        let capacity = framework.cluster.gpuMilli.total
        let workload = WorkloadDistribution(units: trace.pods)
        framework.observe(workload)
        let pods = inflate(trace.pods, capacityMilli: capacity, factor: inflation, seed: seed)
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
            p99DecisionMicroseconds: Double(framework.metrics.latency(quantile: 0.99)) / 1000)
    }
}
