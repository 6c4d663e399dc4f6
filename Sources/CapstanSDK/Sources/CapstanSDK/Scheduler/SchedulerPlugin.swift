import CapstanCore

/// Places instances on nodes: filters out nodes that cannot take an instance, scores the rest.
///
/// Like the Kubernetes scheduling framework's Filter and Score extension points, but each call
/// takes a *batch* of nodes, so the plugin boundary is crossed once per batch, not once per node.
/// The host composes one or more scheduler plugins into a profile: a node is feasible when every
/// filter passes it, and its score is the weighted sum of the plugins' scores.
///
/// Conforming plugins must:
/// - be pure functions of the request: no I/O, no blocking, no state that changes the answer
///   for the same request (the host may call from several threads at once);
/// - return exactly one verdict or score per node, in the request's node order;
/// - return scores in `0...SchedulerAPI.maxNodeScore`; higher is better.
///
/// The methods are synchronous on purpose: they are the hottest path in the system.
public protocol SchedulerPlugin: Sendable {
    /// Which extension points this plugin implements. Default: filter and score.
    var capabilities: SchedulerCapabilities { get }

    /// Decides, for each node of the batch, whether the instance could run there.
    /// - Returns: one verdict per node in `request.nodes`, in order.
    func filter(_ request: FilterRequest) -> [FilterVerdict]

    /// Scores each node of the batch (all feasible) for the instance.
    /// - Returns: one score in `0...SchedulerAPI.maxNodeScore` per node, in order.
    func score(_ request: ScoreRequest) -> [Int64]
}

extension SchedulerPlugin {
    public var capabilities: SchedulerCapabilities { SchedulerCapabilities() }

    /// Default: every node feasible.
    public func filter(_ request: FilterRequest) -> [FilterVerdict] {
        Array(repeating: .feasible, count: request.nodes.count)
    }

    /// Default: every node scores zero.
    public func score(_ request: ScoreRequest) -> [Int64] {
        Array(repeating: 0, count: request.nodes.count)
    }
}

/// Constants of the scheduler API.
public enum SchedulerAPI {
    /// The highest score a plugin may give a node.
    public static let maxNodeScore: Int64 = 100
}

/// The extension points a scheduler plugin implements.
public struct SchedulerCapabilities: Sendable, Hashable {
    public var filters: Bool
    public var scores: Bool

    public init(filters: Bool = true, scores: Bool = true) {
        self.filters = filters
        self.scores = scores
    }
}

/// The instance being placed, as schedulers see it.
public struct SchedulingUnit: Sendable, Hashable {
    public var name: String
    public var labels: [String: String]
    /// What it requests: cpu (millicores), memory (bytes), extended resources (units).
    public var requests: ResourceVector
    /// Acceptable GPU models; empty accepts any.
    public var gpuModels: [String]

    public init(name: String, labels: [String: String] = [:], requests: ResourceVector, gpuModels: [String] = []) {
        self.name = name
        self.labels = labels
        self.requests = requests
        self.gpuModels = gpuModels
    }
}

/// A node as schedulers see it: what it has and what is already requested on it.
public struct NodeSnapshot: Sendable, Hashable {
    public var name: String
    public var labels: [String: String]
    /// What instances may use in total.
    public var allocatable: ResourceVector
    /// What the instances already placed here request.
    public var requested: ResourceVector
    /// Each GPU, with the share of it still free.
    public var gpus: [GPUSlot]
    public var unschedulable: Bool

    public init(name: String, labels: [String: String] = [:], allocatable: ResourceVector, requested: ResourceVector = ResourceVector(), gpus: [GPUSlot] = [], unschedulable: Bool = false) {
        self.name = name
        self.labels = labels
        self.allocatable = allocatable
        self.requested = requested
        self.gpus = gpus
        self.unschedulable = unschedulable
    }

    /// What is still free: allocatable less requested.
    public var free: ResourceVector { allocatable - requested }
}

/// One GPU of a node and how much of it is free, in thousandths.
public struct GPUSlot: Sendable, Hashable {
    public var model: String
    /// 0...1000; 1000 is a whole free GPU.
    public var freeMilli: Int32

    public init(model: String, freeMilli: Int32 = 1000) {
        self.model = model
        self.freeMilli = freeMilli
    }
}

/// A batch of nodes to filter for one instance.
public struct FilterRequest: Sendable {
    public var unit: SchedulingUnit
    public var nodes: [NodeSnapshot]

    public init(unit: SchedulingUnit, nodes: [NodeSnapshot]) {
        self.unit = unit
        self.nodes = nodes
    }
}

/// A batch of feasible nodes to score for one instance.
public struct ScoreRequest: Sendable {
    public var unit: SchedulingUnit
    public var nodes: [NodeSnapshot]

    public init(unit: SchedulingUnit, nodes: [NodeSnapshot]) {
        self.unit = unit
        self.nodes = nodes
    }
}

/// Whether a node can take the instance, and if not, why (shown in `describe`).
public enum FilterVerdict: Sendable, Hashable {
    case feasible
    case infeasible(reason: String)

    public var isFeasible: Bool {
        if case .feasible = self { return true }
        return false
    }
}
