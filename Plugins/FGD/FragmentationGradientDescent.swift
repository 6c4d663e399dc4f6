import CapstanSDK
import Synchronization

/// Fragmentation gradient descent (Weng et al., ATC '23): place each instance where the expected
/// GPU fragmentation of the cluster grows least, under the workload's request mix.
///
/// The score of a node is derived from ΔF = F(node after placement) − F(node now), with
/// ``GPUFragmentation`` as F and the framework's GPU assignment as the placement. The node(s)
/// with the smallest ΔF score 100; the others scale from 99 down to 0 over the batch's range.
///
/// The mix comes from ``observe(_:)``; until the framework provides one, the plugin uses the mix
/// of the instances it has reserved so far. ΔF is cached per (node index, generation, shape), so
/// a node's values are recomputed only after its allocations change.
final class FragmentationGradientDescent: SchedulerPlugin {
    struct State {
        var measure = GPUFragmentation(workload: WorkloadDistribution(shapes: []))
        var observed: [ResourceVector: Double] = [:]
        var fromFramework = false
        /// Shape → row in `deltas`.
        var shapeRows: [ResourceVector: Int] = [:]
        /// `deltas[row][node]` = (generation, ΔF).
        var deltas: [[(UInt64, Double)]] = []
        /// `current[node]` = (generation, F now), shared by every shape.
        var current: [(UInt64, Double)] = []
    }

    private let state = Mutex(State())

    /// ΔF values this close (milli-GPU) count as a tie, broken by best fit. 40 is one score point
    /// of the paper's `sigmoid(ΔF / 1000) × 100` near ΔF = 0, the granularity at which its
    /// simulator compares nodes (it breaks those ties at random).
    static let tieToleranceMilliGPU = 40.0

    var capabilities: SchedulerCapabilities { SchedulerCapabilities(filters: false, scores: true) }

    func observe(_ workload: WorkloadDistribution) {
        // Memory is not part of the measure: shapes that differ only in memory are one shape.
        var merged: [ResourceVector: Double] = [:]
        var order: [ResourceVector] = []
        for shape in workload.shapes {
            var key = shape.requests
            key.memoryBytes = 0
            if merged[key] == nil { order.append(key) }
            merged[key, default: 0] += shape.weight
        }
        let workload = WorkloadDistribution(shapes: order.map { .init(requests: $0, weight: merged[$0]!) })
        state.withLock { state in
            state.measure = GPUFragmentation(workload: workload)
            state.fromFramework = true
            state.shapeRows = [:]
            state.deltas = []
            state.current = []
        }
    }

    func reserve(_ request: ReserveRequest) throws {
        state.withLock { state in
            guard !state.fromFramework else { return }
            state.observed[request.unit.requests, default: 0] += 1
            state.measure = GPUFragmentation(workload: WorkloadDistribution(shapes: state.observed.map { .init(requests: $0.key, weight: $0.value) }))
            state.shapeRows = [:]
            state.deltas = []
            state.current = []
        }
    }

    /// Undoes what ``reserve(_:)`` learned: the placement was vetoed or its binding failed.
    func unreserve(_ request: ReserveRequest) {
        state.withLock { state in
            guard !state.fromFramework, let count = state.observed[request.unit.requests] else { return }
            state.observed[request.unit.requests] = count > 1 ? count - 1 : nil
            state.measure = GPUFragmentation(workload: WorkloadDistribution(shapes: state.observed.map { .init(requests: $0.key, weight: $0.value) }))
            state.shapeRows = [:]
            state.deltas = []
            state.current = []
        }
    }

    func score(_ request: ScoreRequest) -> [Int64] {
        let unit = request.unit
        let deltas: [Double] = state.withLock { state in
            if state.measure.isEmpty {
                return [Double](repeating: 0, count: request.candidates.count)
            }
            let row: Int
            if let existing = state.shapeRows[unit.requests] {
                row = existing
            } else {
                row = state.deltas.count
                state.shapeRows[unit.requests] = row
                state.deltas.append([])
            }
            return request.nodes.withUnsafeBufferPointer { nodes in
                request.candidates.map { index in
                    // Read the cache key without copying the node (no retain/release per node).
                    let slot = nodes[index].index
                    let generation = nodes[index].generation
                    if slot < state.deltas[row].count, state.deltas[row][slot].0 == generation {
                        return state.deltas[row][slot].1
                    }
                    let gpus = ResourceFit.gpuAssignment(for: unit, on: nodes[index]) ?? []
                    if slot >= state.current.count {
                        state.current.append(contentsOf: repeatElement((UInt64.max, 0), count: slot - state.current.count + 1))
                    }
                    if state.current[slot].0 != generation {
                        state.current[slot] = (generation, state.measure.expected(on: nodes[index]))
                    }
                    let delta = state.measure.expected(on: nodes[index], after: unit, gpus: gpus) - state.current[slot].1
                    if slot >= state.deltas[row].count {
                        state.deltas[row].append(contentsOf: repeatElement((UInt64.max, 0), count: slot - state.deltas[row].count + 1))
                    }
                    state.deltas[row][slot] = (generation, delta)
                    return delta
                }
            }
        }
        guard let lowest = deltas.min(), let highest = deltas.max() else { return [] }
        // Among the nodes whose ΔF is within `tieToleranceMilliGPU` of the minimum, the one left
        // with the least free GPU and cpu (best fit) gets the top score alone: near-ties are
        // common (identical nodes) and packing them keeps more nodes whole.
        let tolerance = Self.tieToleranceMilliGPU
        let gpuDemand = unit.gpuMilliDemand
        var best = -1
        var bestLeft = Double.infinity
        request.nodes.withUnsafeBufferPointer { nodes in
            for (position, index) in request.candidates.enumerated() where deltas[position] <= lowest + tolerance {
                let gpuCapacity = Double(max(1, nodes[index].gpus.count * 1000))
                let cpuCapacity = Double(max(1, nodes[index].allocatable.cpuMilli))
                let gpuLeft = Double(nodes[index].freeGPUMilli - gpuDemand) / gpuCapacity
                let cpuLeft = Double(nodes[index].allocatable.cpuMilli - nodes[index].requested.cpuMilli - unit.requests.cpuMilli) / cpuCapacity
                if gpuLeft + cpuLeft < bestLeft {
                    bestLeft = gpuLeft + cpuLeft
                    best = position
                }
            }
        }
        let span = max(highest - lowest, 1e-9)
        return deltas.indices.map { position in
            if position == best { return SchedulerAPI.maxNodeScore }
            return Int64(((highest - deltas[position]) / span * Double(SchedulerAPI.maxNodeScore - 1)).rounded(.down))
        }
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "fgd", version: "1.0.0", kinds: [.scheduler]) { registrar in
        try registrar.register(scheduler: "fgd", configuration: NoConfiguration.self) { _, _ in
            FragmentationGradientDescent()
        }
    }
}
