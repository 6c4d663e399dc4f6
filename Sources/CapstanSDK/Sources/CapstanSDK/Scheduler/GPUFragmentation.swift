import CapstanCore

/// The expected GPU fragmentation of a node under a workload's request mix, after the ATC '23
/// paper "Beware of Fragmentation" (Weng et al.): for each request shape *m* with share *p*, the
/// node's free GPU that *m* could not use counts, weighted by *p*.
///
/// - If *m* does not fit the node at all (too little cpu, or too few GPUs with enough free), all
///   of the node's free GPU is a fragment for it.
/// - If it fits, the free share of each GPU with less free than *m* needs per GPU is a fragment.
/// - CPU-only shapes that fit leave no GPU fragment.
///
/// Values are in milli-GPU. Memory is not part of the measure (as in the paper).
public struct GPUFragmentation: Sendable {
    @usableFromInline var cpu: [Int64] = []
    @usableFromInline var count: [Int] = []
    @usableFromInline var perGPU: [Int32] = []
    @usableFromInline var probability: [Double] = []
    /// Shapes grouped by what they need per GPU and how many GPUs, computed once per state.
    @usableFromInline var groupNeed: [Int32] = []
    @usableFromInline var groupCount: [Int] = []
    @usableFromInline var groupOf: [Int] = []

    /// - Parameter workload: the request mix; shapes are normalised to shares summing to one.
    public init(workload: WorkloadDistribution) {
        let total = workload.shapes.reduce(0) { $0 + max(0, $1.weight) }
        guard total > 0 else { return }
        for shape in workload.shapes where shape.weight > 0 {
            let whole = shape.requests.extended[ResourceName.gpu] ?? 0
            let share = shape.requests.extended[ResourceName.gpuMilli] ?? 0
            cpu.append(shape.requests.cpuMilli)
            count.append(whole > 0 ? Int(whole) : (share > 0 ? 1 : 0))
            perGPU.append(whole > 0 ? 1000 : Int32(clamping: share))
            probability.append(shape.weight / total)
        }
        for shape in probability.indices {
            if let group = groupNeed.indices.first(where: { groupNeed[$0] == perGPU[shape] && groupCount[$0] == count[shape] }) {
                groupOf.append(group)
            } else {
                groupOf.append(groupNeed.count)
                groupNeed.append(perGPU[shape])
                groupCount.append(count[shape])
            }
        }
    }

    /// True when the measure knows no shape (nothing observed yet).
    public var isEmpty: Bool { probability.isEmpty }

    /// The expected fragmentation of a node, in milli-GPU.
    public func expected(on node: NodeSnapshot) -> Double {
        let free = node.gpus.map(\.freeMilli)
        return expected(cpuFree: node.allocatable.cpuMilli - node.requested.cpuMilli, gpuFree: free)
    }

    /// The expected fragmentation of a node after placing `unit` on the given GPUs.
    public func expected(on node: NodeSnapshot, after unit: SchedulingUnit, gpus assignment: [Int]) -> Double {
        var free = node.gpus.map(\.freeMilli)
        let share = Int32(clamping: unit.requests.extended[ResourceName.gpuMilli] ?? 0)
        for gpu in assignment { free[gpu] -= share > 0 ? share : 1000 }
        return expected(cpuFree: node.allocatable.cpuMilli - node.requested.cpuMilli - unit.requests.cpuMilli, gpuFree: free)
    }

    /// The measure for a raw state: free cpu and each GPU's free milli.
    public func expected(cpuFree: Int64, gpuFree: [Int32]) -> Double {
        var total: Int64 = 0
        for free in gpuFree { total += Int64(free) }
        if total == 0 { return 0 }
        // Per group of (need per GPU, GPUs needed): the fragment if the shape's cpu fits.
        return withUnsafeTemporaryAllocation(of: Int64.self, capacity: groupNeed.count) { fragmentOfGroup in
            for group in groupNeed.indices {
                let need = groupNeed[group]
                if need == 0 {
                    fragmentOfGroup[group] = 0
                    continue
                }
                var usable = 0
                var unusable: Int64 = 0
                for free in gpuFree {
                    if free >= need { usable += 1 } else { unusable += Int64(free) }
                }
                fragmentOfGroup[group] = usable < groupCount[group] ? total : unusable
            }
            var fragmentation = 0.0
            for shape in probability.indices {
                fragmentation += probability[shape] * Double(cpuFree < cpu[shape] ? total : fragmentOfGroup[groupOf[shape]])
            }
            return fragmentation
        }
    }
}
