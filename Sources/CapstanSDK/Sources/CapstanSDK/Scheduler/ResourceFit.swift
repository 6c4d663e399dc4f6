import CapstanCore

/// The shared rules for "does it fit" and "how full would it be", for scheduler plugins.
public enum ResourceFit {
    /// Feasible when the node is schedulable, every requested resource is free, and GPU requests
    /// can be met by the node's individual GPUs (whole GPUs, or a share of one GPU).
    public static func verdict(for unit: SchedulingUnit, on node: NodeSnapshot) -> FilterVerdict {
        if node.unschedulable { return .infeasible(reason: "node is unschedulable") }
        let free = node.free
        // GPU shares are accounted per device, never as a node-wide sum; whole GPUs too when the
        // node lists its devices.
        var summed = unit.requests
        summed.extended[ResourceName.gpuMilli] = nil
        if !node.gpus.isEmpty { summed.extended[ResourceName.gpu] = nil }
        if !free.covers(summed) {
            return .infeasible(reason: "insufficient " + free.shortfalls(for: summed).joined(separator: ", "))
        }
        if unit.wantsGPU, node.gpus.isEmpty || summed.extended[ResourceName.gpu] == nil {
            if let reason = gpuShortfall(for: unit, on: node) { return .infeasible(reason: reason) }
        }
        return .feasible
    }

    /// Filters a batch with ``verdict(for:on:)``.
    public static func filter(_ request: FilterRequest) -> [FilterVerdict] {
        request.nodes.map { verdict(for: request.unit, on: $0) }
    }

    /// Why the node's GPUs cannot serve the unit, or nil when they can.
    public static func gpuShortfall(for unit: SchedulingUnit, on node: NodeSnapshot) -> String? {
        let whole = unit.requests.extended[ResourceName.gpu] ?? 0
        let share = unit.requests.extended[ResourceName.gpuMilli] ?? 0
        guard whole > 0 || share > 0 else { return nil }
        let eligible = node.gpus.filter { unit.gpuModels.isEmpty || unit.gpuModels.contains($0.model) }
        if eligible.isEmpty { return node.gpus.isEmpty ? "node has no GPU" : "no GPU of model \(unit.gpuModels.joined(separator: "|"))" }
        if whole > 0 {
            let free = eligible.count(where: { $0.freeMilli == 1000 })
            return free >= whole ? nil : "insufficient whole GPUs (\(free) free, \(whole) requested)"
        }
        return eligible.contains(where: { Int64($0.freeMilli) >= share }) ? nil : "no GPU has \(share) milli-GPU free"
    }

    /// How full the node would be with the unit placed, in `0...1`: the weighted mean, over cpu,
    /// memory and every extended resource the unit requests, of requested / allocatable.
    /// - Parameter weights: weight per resource name; a missing name weighs 1, zero ignores it.
    public static func utilization(after unit: SchedulingUnit, on node: NodeSnapshot, weights: [String: Int] = [:]) -> Double {
        var total = 0.0
        var weightSum = 0.0
        func add(_ name: String, _ requested: Int64, _ asked: Int64, _ allocatable: Int64) {
            let weight = Double(weights[name] ?? 1)
            guard allocatable > 0, weight > 0 else { return }
            total += weight * min(1, Double(requested + asked) / Double(allocatable))
            weightSum += weight
        }
        add(ResourceName.cpu, node.requested.cpuMilli, unit.requests.cpuMilli, node.allocatable.cpuMilli)
        add(ResourceName.memory, node.requested.memoryBytes, unit.requests.memoryBytes, node.allocatable.memoryBytes)
        for (name, asked) in unit.requests.extended where asked > 0 {
            add(name, node.requested.extended[name] ?? 0, asked, node.allocatable.extended[name] ?? 0)
        }
        return weightSum == 0 ? 0 : total / weightSum
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
    /// True when the unit requests whole GPUs or a share of one.
    public var wantsGPU: Bool {
        (requests.extended[ResourceName.gpu] ?? 0) > 0 || (requests.extended[ResourceName.gpuMilli] ?? 0) > 0
    }
}
