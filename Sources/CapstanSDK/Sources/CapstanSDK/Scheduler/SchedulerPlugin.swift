import CapstanCore

/// Places instances on nodes: filters out nodes that cannot take an instance, scores the rest.
///
/// Like the Kubernetes scheduling framework's Filter and Score extension points, but each call
/// takes a *batch* of nodes, so the plugin boundary is crossed once per batch, not once per node.
/// The host composes one or more scheduler plugins into a profile: a node is feasible when every
/// filter passes it, and its score is the weighted sum of the plugins' scores.
///
/// A request names its batch as `candidates`: indices into `nodes`, the framework's whole node
/// table, which is passed without copying. Each node carries a stable ``NodeSnapshot/index`` and a
/// ``NodeSnapshot/generation`` that changes whenever its allocations change, so a plugin may cache
/// per node.
///
/// Conforming plugins must:
/// - answer from the request and from what ``observe(_:)`` and ``reserve(_:)`` told them: no I/O,
///   no blocking (the framework calls from its scheduling loop);
/// - return exactly one verdict or score per candidate, in the order of `candidates`;
/// - return scores in `0...SchedulerAPI.maxNodeScore`; higher is better;
/// - undo in ``unreserve(_:)`` whatever ``reserve(_:)`` recorded.
///
/// `filter` and `score` are synchronous on purpose: they are the hottest path in the system.
public protocol SchedulerPlugin: Sendable {
    /// Which extension points this plugin implements. Default: filter and score.
    var capabilities: SchedulerCapabilities { get }

    /// Decides, for each candidate node, whether the instance could run there.
    /// - Returns: one verdict per entry of `request.candidates`, in order.
    func filter(_ request: FilterRequest) -> [FilterVerdict]

    /// Scores each candidate node (all feasible) for the instance.
    /// - Returns: one score in `0...SchedulerAPI.maxNodeScore` per candidate, in order.
    func score(_ request: ScoreRequest) -> [Int64]

    /// The instance is about to be bound to `request.node`: record anything the plugin tracks.
    /// - Throws: to veto the placement; the framework then calls ``unreserve(_:)`` on every
    ///   plugin that had reserved, in reverse order, and the instance stays unscheduled.
    func reserve(_ request: ReserveRequest) throws

    /// Undoes ``reserve(_:)``: the placement was vetoed or its binding failed. Must not fail.
    func unreserve(_ request: ReserveRequest)

    /// The mix of requests the workload is expected to make, for plugins that plan ahead
    /// (fragmentation-aware placement). Called when the framework learns it, and again when it
    /// changes.
    func observe(_ workload: WorkloadDistribution)
}

extension SchedulerPlugin {
    public var capabilities: SchedulerCapabilities { SchedulerCapabilities() }

    /// Default: every node feasible.
    public func filter(_ request: FilterRequest) -> [FilterVerdict] {
        Array(repeating: .feasible, count: request.candidates.count)
    }

    /// Default: every node scores zero.
    public func score(_ request: ScoreRequest) -> [Int64] {
        Array(repeating: 0, count: request.candidates.count)
    }

    public func reserve(_ request: ReserveRequest) throws {}
    public func unreserve(_ request: ReserveRequest) {}
    public func observe(_ workload: WorkloadDistribution) {}
}

/// Constants of the scheduler API.
public enum SchedulerAPI {
    /// The highest score a plugin may give a node.
    @_alwaysEmitIntoClient public static var maxNodeScore: Int64 { 100 }
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
///
/// Frozen, like ``NodeSnapshot`` and ``GPUSlot``: plugins in other libraries read its fields in
/// place (a resilient struct would be copied whole, with every reference retained, per access).
@frozen
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
///
/// Frozen: its layout is ABI, so a plugin reads `nodes[i].allocatable` in place, with no copy.
/// New node attributes arrive as labels, or in a new scheduler API version.
@frozen
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
    /// The node's position in the framework's node table; stable while the node exists.
    public var index: Int
    /// Changes whenever the node's allocations change; with ``index``, a cache key.
    public var generation: UInt64

    public init(name: String, labels: [String: String] = [:], allocatable: ResourceVector, requested: ResourceVector = ResourceVector(), gpus: [GPUSlot] = [], unschedulable: Bool = false, index: Int = 0, generation: UInt64 = 0) {
        self.name = name
        self.labels = labels
        self.allocatable = allocatable
        self.requested = requested
        self.gpus = gpus
        self.unschedulable = unschedulable
        self.index = index
        self.generation = generation
    }

    /// Free milli-GPU over all GPUs.
    public var freeGPUMilli: Int64 { gpus.reduce(0) { $0 + Int64($1.freeMilli) } }

    /// What is still free: allocatable less requested.
    public var free: ResourceVector { allocatable - requested }
}

/// One GPU of a node and how much of it is free, in thousandths.
@frozen
public struct GPUSlot: Sendable, Hashable {
    public var model: String
    /// 0...1000; 1000 is a whole free GPU.
    public var freeMilli: Int32

    public init(model: String, freeMilli: Int32 = 1000) {
        self.model = model
        self.freeMilli = freeMilli
    }
}

/// A batch of nodes to filter for one instance: `candidates` index into `nodes`.
public struct FilterRequest: Sendable {
    public var unit: SchedulingUnit
    /// The node table (shared, not copied per request).
    public var nodes: [NodeSnapshot]
    /// The batch: indices into ``nodes``.
    public var candidates: [Int]

    /// - Parameter candidates: nil means every node.
    public init(unit: SchedulingUnit, nodes: [NodeSnapshot], candidates: [Int]? = nil) {
        self.unit = unit
        self.nodes = nodes
        self.candidates = candidates ?? Array(nodes.indices)
    }
}

/// A batch of feasible nodes to score for one instance: `candidates` index into `nodes`.
public struct ScoreRequest: Sendable {
    public var unit: SchedulingUnit
    /// The node table (shared, not copied per request).
    public var nodes: [NodeSnapshot]
    /// The feasible nodes to score: indices into ``nodes``.
    public var candidates: [Int]

    /// - Parameter candidates: nil means every node.
    public init(unit: SchedulingUnit, nodes: [NodeSnapshot], candidates: [Int]? = nil) {
        self.unit = unit
        self.nodes = nodes
        self.candidates = candidates ?? Array(nodes.indices)
    }
}

/// A placement about to be made: the instance, the node as it is *before* the placement, and
/// the GPUs (indices into ``NodeSnapshot/gpus``) the framework assigned.
public struct ReserveRequest: Sendable {
    public var unit: SchedulingUnit
    public var node: NodeSnapshot
    public var gpuAssignment: [Int]

    public init(unit: SchedulingUnit, node: NodeSnapshot, gpuAssignment: [Int] = []) {
        self.unit = unit
        self.node = node
        self.gpuAssignment = gpuAssignment
    }
}

/// The expected mix of requests: each distinct request shape and its share of the workload.
public struct WorkloadDistribution: Sendable, Hashable {
    public struct Shape: Sendable, Hashable {
        public var requests: ResourceVector
        /// Relative frequency; the shares need not sum to one.
        public var weight: Double

        public init(requests: ResourceVector, weight: Double) {
            self.requests = requests
            self.weight = weight
        }
    }

    public var shapes: [Shape]

    public init(shapes: [Shape]) { self.shapes = shapes }

    /// Counts identical request shapes among `units`.
    public init(units: some Sequence<SchedulingUnit>) {
        var counts: [ResourceVector: Double] = [:]
        var order: [ResourceVector] = []
        for unit in units {
            if counts[unit.requests] == nil { order.append(unit.requests) }
            counts[unit.requests, default: 0] += 1
        }
        shapes = order.map { Shape(requests: $0, weight: counts[$0]!) }
    }
}

/// Whether a node can take the instance, and if not, why (shown in `describe`).
@frozen
public enum FilterVerdict: Sendable, Hashable {
    case feasible
    case infeasible(reason: String)

    public var isFeasible: Bool {
        if case .feasible = self { return true }
        return false
    }
}
