import CapstanSDK

/// Where an instance went.
public struct Placement: Sendable, Hashable {
    public var unit: SchedulingUnit
    public var nodeIndex: Int
    public var nodeName: String
    /// GPU indices on the node (empty when no GPU was requested).
    public var gpus: [Int]
}

/// Why an instance could not be placed, as `describe` shows it.
public struct Unschedulable: Sendable, Hashable, CustomStringConvertible {
    /// Nodes looked at.
    public var nodesEvaluated: Int
    public var totalNodes: Int
    /// Reason → how many nodes gave it.
    public var reasons: [String: Int]

    public init(nodesEvaluated: Int, totalNodes: Int, reasons: [String: Int]) {
        self.nodesEvaluated = nodesEvaluated
        self.totalNodes = totalNodes
        self.reasons = reasons
    }

    public var description: String {
        let parts = reasons.sorted { $0.value == $1.value ? $0.key < $1.key : $0.value > $1.value }.map { "\($0.value) \($0.key)" }
        return "0/\(totalNodes) nodes are available" + (parts.isEmpty ? "" : ": " + parts.joined(separator: ", "))
    }
}

public enum SchedulingDecision: Sendable, Hashable {
    case placed(Placement)
    case unschedulable(Unschedulable)

    public var placement: Placement? {
        if case .placed(let placement) = self { return placement }
        return nil
    }
}

/// Places instances one at a time with a profile's plugins, like one cycle of kube-scheduler:
///
/// 1. **Filter**, in batches of nodes from a rotating start, until enough feasible nodes are found
///    (``SchedulingProfile/percentageOfNodesToScore``). Resource fit — cpu, memory, extended
///    resources and per-GPU shares — is the framework's own check and always applies, so no plugin
///    can over-commit a node; plugins that declare filters add their constraints per batch.
/// 2. **Score** the feasible nodes in one call per plugin; a node's score is the weighted sum.
/// 3. **Reserve** on the best node: assign GPUs, call every plugin's `reserve`; if one throws,
///    the ones before it are unreserved in reverse order and nothing is booked.
///
/// Not thread-safe: one scheduling loop owns it, as kube-scheduler has one scheduling goroutine.
public final class SchedulingFramework {
    public let profile: SchedulingProfile
    public private(set) var cluster: ClusterState
    public private(set) var metrics = SchedulerMetrics()
    private var nextStart = 0

    public init(profile: SchedulingProfile, nodes: [NodeSnapshot]) {
        self.profile = profile
        self.cluster = ClusterState(nodes: nodes)
    }

    /// Tells every plugin the expected request mix.
    public func observe(_ workload: WorkloadDistribution) {
        for entry in profile.entries { entry.plugin.observe(workload) }
    }

    /// Adds or updates a node.
    public func upsert(_ node: NodeSnapshot) { cluster.upsert(node) }

    /// A constraint of the host's own on one instance (the node of its node-local volumes, the
    /// host ports it needs): the reason a node cannot take it, or nil. Checked with resource fit,
    /// inside the one framework of the pass, so every placement of the pass is booked in one
    /// place (issue 9: pinned instances used to be placed by a second framework).
    public typealias NodeConstraint = (NodeSnapshot) -> String?

    /// Places one instance, or says why it cannot be placed.
    public func schedule(_ unit: SchedulingUnit, constraint: NodeConstraint? = nil) -> SchedulingDecision {
        let started = ContinuousClock.now
        defer {
            let elapsed = ContinuousClock.now - started
            metrics.recordDecision(nanoseconds: elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000)
        }
        let total = cluster.nodes.count
        var reasons = ReasonCounter()
        guard total > 0 else {
            metrics.unschedulable += 1
            return .unschedulable(Unschedulable(nodesEvaluated: 0, totalNodes: 0, reasons: ["no nodes registered": 1]))
        }
        let (feasible, evaluated) = filter(unit, constraint: constraint, reasons: &reasons)
        guard !feasible.isEmpty else {
            metrics.unschedulable += 1
            return .unschedulable(Unschedulable(nodesEvaluated: evaluated, totalNodes: total, reasons: reasons.dictionary))
        }
        let best = feasible.count == 1 ? feasible[0] : pickBest(unit, among: feasible)
        return reserve(unit, on: best)
    }

    /// Frees a placement (its binding failed, or the instance is gone) and unreserves it.
    public func release(_ placement: Placement) {
        let before = cluster.nodes[placement.nodeIndex]
        cluster.release(placement.unit, gpus: placement.gpus, from: placement.nodeIndex)
        let request = ReserveRequest(unit: placement.unit, node: before, gpuAssignment: placement.gpus)
        for entry in profile.entries.reversed() { entry.plugin.unreserve(request) }
    }

    // MARK: Stages

    private func filter(_ unit: SchedulingUnit, constraint: NodeConstraint?, reasons: inout ReasonCounter) -> (feasible: [Int], evaluated: Int) {
        let total = cluster.nodes.count
        let wanted = profile.feasibleNodesToFind(total)
        let filters = profile.entries.filter { $0.plugin.capabilities.filters }
        var feasible: [Int] = []
        feasible.reserveCapacity(min(wanted, total))
        var evaluated = 0
        var batch: [Int] = []
        batch.reserveCapacity(profile.batchSize)
        while evaluated < total && feasible.count < wanted {
            batch.removeAll(keepingCapacity: true)
            while batch.count < profile.batchSize && evaluated < total {
                batch.append((nextStart + evaluated) % total)
                evaluated += 1
            }
            // Built-in resource fit, in host code: no boundary crossing for the common rejection.
            let (fitting, rejections) = ResourceFit.partition(FilterRequest(unit: unit, nodes: cluster.nodes, candidates: batch))
            for rejection in rejections { reasons.add(rejection.reason, count: rejection.count) }
            batch = fitting
            if let constraint {
                batch = batch.filter { index in
                    guard let reason = constraint(cluster.nodes[index]) else { return true }
                    reasons.add(reason)
                    return false
                }
            }
            for entry in filters where !batch.isEmpty {
                let verdicts = timed(entry.name) { entry.plugin.filter(FilterRequest(unit: unit, nodes: cluster.nodes, candidates: batch)) }
                metrics.plugins[entry.name, default: .init()].filterCalls += 1
                var kept: [Int] = []
                kept.reserveCapacity(batch.count)
                for (position, index) in batch.enumerated() {
                    if position < verdicts.count, case .infeasible(let reason) = verdicts[position] {
                        reasons.add(reason)
                    } else {
                        kept.append(index)
                    }
                }
                batch = kept
            }
            feasible.append(contentsOf: batch)
        }
        nextStart = (nextStart + evaluated) % total
        return (feasible, evaluated)
    }

    private func pickBest(_ unit: SchedulingUnit, among feasible: [Int]) -> Int {
        var totals = [Int64](repeating: 0, count: feasible.count)
        for entry in profile.entries where entry.plugin.capabilities.scores && entry.weight != 0 {
            let scores = timed(entry.name) { entry.plugin.score(ScoreRequest(unit: unit, nodes: cluster.nodes, candidates: feasible)) }
            metrics.plugins[entry.name, default: .init()].scoreCalls += 1
            for position in 0..<min(scores.count, totals.count) {
                totals[position] += entry.weight * min(max(scores[position], 0), SchedulerAPI.maxNodeScore)
            }
        }
        var best = 0
        for position in totals.indices where totals[position] > totals[best] { best = position }
        return feasible[best]
    }

    private func reserve(_ unit: SchedulingUnit, on index: Int) -> SchedulingDecision {
        let node = cluster.nodes[index]
        guard let gpus = ResourceFit.gpuAssignment(for: unit, on: node) else {
            metrics.unschedulable += 1
            return .unschedulable(Unschedulable(nodesEvaluated: 1, totalNodes: cluster.nodes.count, reasons: ["no GPU assignment on \(node.name)": 1]))
        }
        let request = ReserveRequest(unit: unit, node: node, gpuAssignment: gpus)
        for (position, entry) in profile.entries.enumerated() {
            do {
                try entry.plugin.reserve(request)
            } catch {
                metrics.plugins[entry.name, default: .init()].reserveFailures += 1
                for earlier in profile.entries[..<position].reversed() { earlier.plugin.unreserve(request) }
                metrics.unschedulable += 1
                return .unschedulable(Unschedulable(nodesEvaluated: 1, totalNodes: cluster.nodes.count, reasons: ["reserve on \(node.name) vetoed by \(entry.name): \(error)": 1]))
            }
        }
        cluster.apply(unit, gpus: gpus, to: index)
        metrics.scheduled += 1
        return .placed(Placement(unit: unit, nodeIndex: index, nodeName: node.name, gpus: gpus))
    }

    private func timed<T>(_ plugin: String, _ body: () -> T) -> T {
        let started = ContinuousClock.now
        let result = body()
        let elapsed = ContinuousClock.now - started
        metrics.plugins[plugin, default: .init()].nanoseconds += elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
        return result
    }
}

/// Counts filter reasons. Reasons are few and mostly the same literal strings, so a short list
/// compared by value (identical literals compare by pointer first) beats hashing each one.
struct ReasonCounter {
    private var reasons: [String] = []
    private var counts: [Int] = []

    mutating func add(_ reason: String, count: Int = 1) {
        for index in reasons.indices where reasons[index] == reason {
            counts[index] += count
            return
        }
        reasons.append(reason)
        counts.append(count)
    }

    var dictionary: [String: Int] { Dictionary(zip(reasons, counts), uniquingKeysWith: +) }
}
