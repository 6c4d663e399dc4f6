import CapstanSDK
import Synchronization

/// Generations are unique in the process, so (index, generation) names one node state even
/// across frameworks: plugin caches keyed on it are never stale.
let nodeGenerations = Atomic<UInt64>(0)

func nextGeneration() -> UInt64 { nodeGenerations.wrappingAdd(1, ordering: .relaxed).newValue }

/// The scheduler's view of the cluster: every node, what is requested on it, and each GPU's free
/// share. The only place allocations change, so its accounting invariants hold everywhere:
/// no resource goes below zero free and no GPU is given more than 1000 milli.
public struct ClusterState: Sendable {
    /// The node table; `nodes[i].index == i`.
    public private(set) var nodes: [NodeSnapshot]
    private var indexByName: [String: Int]

    public init(nodes: [NodeSnapshot]) {
        var table = nodes
        for index in table.indices {
            table[index].index = index
            table[index].generation = nextGeneration()
        }
        self.nodes = table
        self.indexByName = Dictionary(table.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public func index(of name: String) -> Int? { indexByName[name] }

    /// Total and allocated milli-GPU over all nodes with GPU devices.
    public var gpuMilli: (total: Int64, allocated: Int64) {
        var total: Int64 = 0
        var free: Int64 = 0
        for node in nodes {
            total += Int64(node.gpus.count) * 1000
            free += node.freeGPUMilli
        }
        return (total, total - free)
    }

    /// Books `unit` on node `index` with the given GPUs.
    /// - Precondition: the placement fits (the framework checked with ``ResourceFit``).
    mutating func apply(_ unit: SchedulingUnit, gpus: [Int], to index: Int) {
        nodes[index].requested += unit.requests
        let share = Int32(clamping: unit.requests.extended[ResourceName.gpuMilli] ?? 0)
        for gpu in gpus {
            let take: Int32 = share > 0 ? share : 1000
            precondition(nodes[index].gpus[gpu].freeMilli >= take, "GPU \(gpu) of \(nodes[index].name) over-committed")
            nodes[index].gpus[gpu].freeMilli -= take
        }
        nodes[index].generation = nextGeneration()
    }

    /// Undoes ``apply(_:gpus:to:)``.
    mutating func release(_ unit: SchedulingUnit, gpus: [Int], from index: Int) {
        nodes[index].requested -= unit.requests
        let share = Int32(clamping: unit.requests.extended[ResourceName.gpuMilli] ?? 0)
        for gpu in gpus {
            nodes[index].gpus[gpu].freeMilli = min(1000, nodes[index].gpus[gpu].freeMilli + (share > 0 ? share : 1000))
        }
        nodes[index].generation = nextGeneration()
    }

    /// Replaces a node's description (a node registered or changed); keeps its allocations.
    public mutating func upsert(_ node: NodeSnapshot) {
        if let index = indexByName[node.name] {
            var updated = node
            updated.index = index
            updated.requested = nodes[index].requested
            updated.gpus = nodes[index].gpus.count == node.gpus.count ? nodes[index].gpus : node.gpus
            updated.generation = nextGeneration()
            nodes[index] = updated
        } else {
            var added = node
            added.index = nodes.count
            added.generation = nextGeneration()
            indexByName[node.name] = nodes.count
            nodes.append(added)
        }
    }
}
