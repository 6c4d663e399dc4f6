import CapstanCore

/// The shared rules for "does it fit" and "how full would it be", for scheduler plugins.
public enum ResourceFit {
    /// Feasible when the node is schedulable, every requested resource is free, and GPU requests
    /// can be met by the node's individual GPUs (whole GPUs, or a share of one GPU).
    public static func verdict(for unit: SchedulingUnit, on node: NodeSnapshot) -> FilterVerdict {
        verdict(for: unit, demand: GPUDemand(unit), on: node)
    }

    /// Filters a batch with ``verdict(for:on:)``, one verdict per candidate.
    public static func filter(_ request: FilterRequest) -> [FilterVerdict] {
        let demand = GPUDemand(request.unit)
        return request.nodes.withUnsafeBufferPointer { nodes in
            var verdicts: [FilterVerdict] = []
            verdicts.reserveCapacity(request.candidates.count)
            for index in request.candidates {
                verdicts.append(rejection(for: request.unit, demand: demand, on: nodes.baseAddress! + index).map { .infeasible(reason: $0) } ?? .feasible)
            }
            return verdicts
        }
    }

    /// Splits a batch into the candidates that fit and the reasons the others do not, without
    /// materialising a verdict per node: the framework's own filter.
    public static func partition(_ request: FilterRequest) -> (feasible: [Int], rejections: [(reason: String, count: Int)]) {
        let demand = GPUDemand(request.unit)
        var feasible: [Int] = []
        feasible.reserveCapacity(request.candidates.count)
        var reasons: [String] = []
        var counts: [Int] = []
        request.nodes.withUnsafeBufferPointer { nodes in
            for index in request.candidates {
                guard let reason = rejection(for: request.unit, demand: demand, on: nodes.baseAddress! + index) else {
                    feasible.append(index)
                    continue
                }
                // Lengths first: comparing different reason strings by content is the slow path.
                let length = reason.utf8.count
                if let slot = reasons.firstIndex(where: { $0.utf8.count == length && $0 == reason }) {
                    counts[slot] += 1
                } else {
                    reasons.append(reason)
                    counts.append(1)
                }
            }
        }
        return (feasible, zip(reasons, counts).map { ($0, $1) })
    }

    /// The unit's request, read once per batch.
    struct GPUDemand {
        var cpu: Int64
        var memory: Int64
        var whole: Int64
        var share: Int64
        var otherExtended: Bool

        init(_ unit: SchedulingUnit) {
            cpu = unit.requests.cpuMilli
            memory = unit.requests.memoryBytes
            whole = unit.requests.extended[ResourceName.gpu] ?? 0
            share = unit.requests.extended[ResourceName.gpuMilli] ?? 0
            otherExtended = unit.requests.extended.contains { $0.key != ResourceName.gpu && $0.key != ResourceName.gpuMilli && $0.value > 0 }
        }
    }

    static func verdict(for unit: SchedulingUnit, demand: GPUDemand, on node: NodeSnapshot) -> FilterVerdict {
        withUnsafePointer(to: node) { rejection(for: unit, demand: demand, on: $0) }.map { .infeasible(reason: $0) } ?? .feasible
    }

    /// Why the node cannot take the unit, or nil when it can. Takes a pointer so the node's
    /// fields are read in place: passing the struct would copy it and retain its references.
    static func rejection(for unit: SchedulingUnit, demand: GPUDemand, on pointer: UnsafePointer<NodeSnapshot>) -> String? {
        if pointer.pointee.unschedulable { return Reason.unschedulable }
        let cpuShort = demand.cpu > pointer.pointee.allocatable.cpuMilli - pointer.pointee.requested.cpuMilli
        let memoryShort = demand.memory > pointer.pointee.allocatable.memoryBytes - pointer.pointee.requested.memoryBytes
        if !cpuShort && !memoryShort && demand.whole == 0 && demand.share == 0 && !demand.otherExtended { return nil }
        // GPU shares are accounted per device, never as a node-wide sum; whole GPUs too when the
        // node lists its devices.
        let devices = !pointer.pointee.gpus.isEmpty
        var wholeShort = false
        if demand.whole > 0 && !devices {
            wholeShort = demand.whole > (pointer.pointee.allocatable.extended[ResourceName.gpu] ?? 0) - (pointer.pointee.requested.extended[ResourceName.gpu] ?? 0)
        }
        var otherShort: [String] = []
        if demand.otherExtended {
            for (name, amount) in unit.requests.extended.sorted(by: { $0.key < $1.key }) where name != ResourceName.gpu && name != ResourceName.gpuMilli {
                if amount > (pointer.pointee.allocatable.extended[name] ?? 0) - (pointer.pointee.requested.extended[name] ?? 0) { otherShort.append(name) }
            }
        }
        if cpuShort || memoryShort || wholeShort || !otherShort.isEmpty {
            // Literal strings for the common cases: no allocation on the hot path.
            if otherShort.isEmpty && !wholeShort {
                if cpuShort && memoryShort { return Reason.cpuAndMemory }
                return cpuShort ? Reason.cpu : Reason.memory
            }
            var names: [String] = []
            if cpuShort { names.append(ResourceName.cpu) }
            if memoryShort { names.append(ResourceName.memory) }
            if wholeShort { names.append(ResourceName.gpu) }
            return "insufficient " + (names + otherShort).joined(separator: ", ")
        }
        if demand.share > 0 || (demand.whole > 0 && devices) {
            return gpuShortfall(whole: demand.whole, share: demand.share, models: unit.gpuModels, gpus: pointer.pointee.gpus)
        }
        return nil
    }

    /// The reasons the fit check gives, as literals (no allocation per rejected node).
    public enum Reason {
        public static let unschedulable = "node is unschedulable"
        public static let cpu = "insufficient cpu"
        public static let memory = "insufficient memory"
        public static let cpuAndMemory = "insufficient cpu, memory"
        public static let noGPU = "node has no GPU"
        public static let gpuModel = "no GPU of a requested model"
        public static let wholeGPUs = "insufficient whole GPUs"
        public static let gpuShare = "no GPU has the requested share free"
    }

    /// Why the node's GPUs cannot serve the unit, or nil when they can.
    public static func gpuShortfall(for unit: SchedulingUnit, on node: NodeSnapshot) -> String? {
        gpuShortfall(whole: unit.requests.extended[ResourceName.gpu] ?? 0, share: unit.requests.extended[ResourceName.gpuMilli] ?? 0, models: unit.gpuModels, gpus: node.gpus)
    }

    static func gpuShortfall(whole: Int64, share: Int64, models: [String], gpus: [GPUSlot]) -> String? {
        guard whole > 0 || share > 0 else { return nil }
        if gpus.isEmpty { return Reason.noGPU }
        var eligible = 0
        var wholeFree: Int64 = 0
        var shareFits = false
        for gpu in gpus where models.isEmpty || models.contains(gpu.model) {
            eligible += 1
            if gpu.freeMilli == 1000 { wholeFree += 1 }
            if Int64(gpu.freeMilli) >= share { shareFits = true }
        }
        if eligible == 0 { return Reason.gpuModel }
        if whole > 0 { return wholeFree >= whole ? nil : Reason.wholeGPUs }
        return shareFits ? nil : Reason.gpuShare
    }

    /// The GPUs the framework assigns for a placement: whole GPUs take the lowest-indexed fully
    /// free eligible GPUs; a share takes the eligible GPU with the least free share that fits
    /// (best fit, keeping whole GPUs free). Nil when the node cannot serve the request.
    public static func gpuAssignment(for unit: SchedulingUnit, on node: NodeSnapshot) -> [Int]? {
        let whole = Int(unit.requests.extended[ResourceName.gpu] ?? 0)
        let share = Int32(clamping: unit.requests.extended[ResourceName.gpuMilli] ?? 0)
        guard whole > 0 || share > 0 else { return [] }
        func eligible(_ slot: GPUSlot) -> Bool { unit.gpuModels.isEmpty || unit.gpuModels.contains(slot.model) }
        if whole > 0 {
            let free = node.gpus.indices.filter { node.gpus[$0].freeMilli == 1000 && eligible(node.gpus[$0]) }
            return free.count >= whole ? Array(free.prefix(whole)) : nil
        }
        var best: Int?
        for index in node.gpus.indices where eligible(node.gpus[index]) && node.gpus[index].freeMilli >= share {
            if best == nil || node.gpus[index].freeMilli < node.gpus[best!].freeMilli { best = index }
        }
        return best.map { [$0] }
    }

    /// How full the node would be with the unit placed, in `0...1`: the weighted mean, over cpu,
    /// memory and every extended resource the unit requests, of requested / allocatable.
    /// Inlinable over frozen types, so a plugin's per-node loop reads fields in place.
    @inlinable @inline(__always)
    public static func utilization(after unit: SchedulingUnit, on node: NodeSnapshot, weights: ResourceWeights = ResourceWeights()) -> Double {
        var total = 0.0
        var weightSum = 0.0
        if node.allocatable.cpuMilli > 0 && weights.cpu > 0 {
            total += weights.cpu * min(1, Double(node.requested.cpuMilli + unit.requests.cpuMilli) / Double(node.allocatable.cpuMilli))
            weightSum += weights.cpu
        }
        if node.allocatable.memoryBytes > 0 && weights.memory > 0 {
            total += weights.memory * min(1, Double(node.requested.memoryBytes + unit.requests.memoryBytes) / Double(node.allocatable.memoryBytes))
            weightSum += weights.memory
        }
        if !unit.requests.extended.isEmpty {
            for (name, asked) in unit.requests.extended where asked > 0 {
                let weight = Double(weights.extended[name] ?? 1)
                let allocatable = node.allocatable.extended[name] ?? 0
                guard allocatable > 0, weight > 0 else { continue }
                total += weight * min(1, Double((node.requested.extended[name] ?? 0) + asked) / Double(allocatable))
                weightSum += weight
            }
        }
        return weightSum == 0 ? 0 : total / weightSum
    }
}

/// Weights per resource for ``ResourceFit/utilization(after:on:weights:)``, resolved once per
/// batch from a name → weight map (a missing name weighs 1; zero ignores the resource).
@frozen
public struct ResourceWeights: Sendable, Hashable {
    public var cpu: Double
    public var memory: Double
    public var extended: [String: Int]

    @inlinable
    public init(_ byName: [String: Int] = [:]) {
        cpu = Double(byName[ResourceName.cpu] ?? 1)
        memory = Double(byName[ResourceName.memory] ?? 1)
        extended = byName
    }
}

/// Per-resource weights for utilization scores, as scheduler plugins take them in config:
/// `{resources: {cpu: 1, memory: 1, gpu: 4}}`.
public struct ResourceWeightsConfiguration: PluginConfiguration, Hashable {
    /// Weight per resource name; unnamed resources weigh 1.
    public var resources: [String: Int]

    public init(resources: [String: Int] = [:]) { self.resources = resources }

    enum CodingKeys: String, CodingKey, CaseIterable { case resources }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        resources = try container.decodeIfPresent([String: Int].self, forKey: .resources) ?? [:]
    }

    public func validate() -> [ValidationProblem] {
        resources.keys.sorted().compactMap { name in
            let weight = resources[name]!
            if !ResourceName.isValid(name) { return ValidationProblem(path: "resources.\(name)", message: "\"\(name)\" is not a resource name") }
            if !(0...100).contains(weight) { return ValidationProblem(path: "resources.\(name)", message: "weight \(weight) is outside 0...100") }
            return nil
        }
    }
}

extension SchedulingUnit {
    /// The milli-GPU the unit asks for: 1000 per whole GPU, or its share of one.
    public var gpuMilliDemand: Int64 {
        (requests.extended[ResourceName.gpu] ?? 0) * 1000 + (requests.extended[ResourceName.gpuMilli] ?? 0)
    }

    /// True when the unit requests whole GPUs or a share of one.
    public var wantsGPU: Bool {
        (requests.extended[ResourceName.gpu] ?? 0) > 0 || (requests.extended[ResourceName.gpuMilli] ?? 0) > 0
    }
}
