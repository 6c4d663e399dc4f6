import CapstanScheduling
import CapstanSDK
import Foundation
import PluginHost
import Testing

@Suite struct SchedulingFrameworkTests {
    let nodes = [node("empty"), node("half"), node("small", cpu: 1000)]

    func framework(_ entries: [SchedulingProfile.Entry], nodes: [NodeSnapshot]? = nil) -> SchedulingFramework {
        SchedulingFramework(profile: SchedulingProfile(name: "test", entries: entries, percentageOfNodesToScore: 100), nodes: nodes ?? self.nodes)
    }

    @Test func weightsDecideBetweenComposedPlugins() {
        var busy = node("busy")
        busy.requested = ResourceVector(cpuMilli: 4000, memoryBytes: 16 << 30)
        // binpack prefers the fuller node, spread the emptier: the weights decide.
        for (binpackWeight, spreadWeight, expected) in [(3, 1, "busy"), (1, 3, "empty")] as [(Int64, Int64, String)] {
            let scheduling = framework([
                .init(name: "binpack", plugin: Plugins.scheduler("binpack"), weight: binpackWeight),
                .init(name: "spread", plugin: Plugins.scheduler("spread"), weight: spreadWeight),
            ], nodes: [node("empty"), busy])
            #expect(scheduling.schedule(pod("web", cpu: 1000)).placement?.nodeName == expected)
            #expect(scheduling.metrics.plugins["binpack"]?.scoreCalls == 1 && scheduling.metrics.plugins["spread"]?.scoreCalls == 1)
            #expect((scheduling.metrics.plugins["binpack"]?.filterCalls ?? 0) == 0)
        }
    }

    @Test func resourceFitIsAlwaysEnforcedAndReasonsAreCounted() {
        let scheduling = framework([.init(name: "prefer-small", plugin: RecordingPlugin(preferred: "small"))], nodes: [node("a", cpu: 500), node("b", cpu: 500, memoryGi: 0), node("c", gpus: 0)] + [NodeSnapshot(name: "d", allocatable: ResourceVector(cpuMilli: 8000, memoryBytes: 1 << 34), unschedulable: true)])
        guard case .unschedulable(let why) = scheduling.schedule(pod("big", cpu: 1000, gpuMilli: 500)) else {
            Issue.record("expected unschedulable")
            return
        }
        #expect(why.description == "0/4 nodes are available: 1 insufficient cpu, 1 insufficient cpu, memory, 1 node has no GPU, 1 node is unschedulable")
    }

    /// The host's own constraints (a pinned node, taken host ports) are checked with resource
    /// fit, inside the one framework, and their reasons are counted like the rest.
    @Test func hostConstraintsNarrowTheCandidatesAndGiveReasons() {
        let scheduling = framework([.init(name: "binpack", plugin: Plugins.scheduler("binpack"))])
        let onlyHalf: SchedulingFramework.NodeConstraint = { $0.name == "half" ? nil : "its volumes live on node half" }
        #expect(scheduling.schedule(pod("a"), constraint: onlyHalf).placement?.nodeName == "half")
        guard case .unschedulable(let why) = scheduling.schedule(pod("b"), constraint: { _ in "host port 8080/tcp is taken" }) else {
            Issue.record("expected unschedulable")
            return
        }
        #expect(why.description == "0/3 nodes are available: 3 host port 8080/tcp is taken")
        // What the constrained placement booked counts for the next one (one framework, one book).
        let full = framework([], nodes: [node("only", cpu: 1000)])
        #expect(full.schedule(pod("x", cpu: 1000), constraint: { _ in nil }).placement != nil)
        #expect(full.schedule(pod("y", cpu: 1000)).placement == nil)
    }

    @Test func pluginFiltersAddConstraints() {
        let scheduling = framework([.init(name: "no-spot", plugin: RecordingPlugin(forbiddenLabel: "spot"))], nodes: [node("spot-1", labels: ["spot": "yes"]), node("steady")])
        for index in 0..<3 {
            #expect(scheduling.schedule(pod("p\(index)")).placement?.nodeName == "steady")
        }
        #expect(scheduling.metrics.plugins["no-spot"]?.filterCalls == 3)
    }

    @Test func aVetoedReserveRollsBackTheEarlierPlugins() {
        let first = RecordingPlugin(preferred: "empty")
        let second = RecordingPlugin(vetoReserve: true)
        let scheduling = framework([.init(name: "first", plugin: first), .init(name: "quota", plugin: second)])
        let before = scheduling.cluster.nodes
        let decision = scheduling.schedule(pod("job"))
        guard case .unschedulable(let why) = decision else {
            Issue.record("expected a veto")
            return
        }
        #expect(why.description.contains("vetoed by quota: quota exceeded"))
        #expect(first.entries == ["reserve job@empty", "unreserve job@empty"])
        #expect(second.entries == ["reserve job@empty"])
        #expect(scheduling.cluster.nodes.map(\.requested) == before.map(\.requested))
        #expect(scheduling.metrics.plugins["quota"]?.reserveFailures == 1)
    }

    @Test func releaseUndoesAPlacementAndUnreserves() throws {
        let recorder = RecordingPlugin(preferred: "empty")
        let scheduling = framework([.init(name: "recorder", plugin: recorder)], nodes: [node("empty", gpus: 2)])
        let placement = try #require(scheduling.schedule(pod("job", gpuMilli: 300)).placement)
        #expect(scheduling.cluster.nodes[0].gpus.map(\.freeMilli) == [700, 1000])
        scheduling.release(placement)
        #expect(scheduling.cluster.nodes[0].gpus.map(\.freeMilli) == [1000, 1000])
        #expect(scheduling.cluster.nodes[0].requested == ResourceVector())
        #expect(recorder.entries == ["reserve job@empty", "unreserve job@empty"])
    }

    @Test func gpuSharesNeverOverCommitAGPU() {
        let scheduling = framework([.init(name: "binpack", plugin: Plugins.scheduler("binpack"))], nodes: (0..<6).map { node("n\($0)", cpu: 64_000, memoryGi: 256, gpus: [1, 2, 4, 8][$0 % 4]) })
        var generator = SplitMix64(seed: 7)
        var placed: [Placement] = []
        for index in 0..<400 {
            let kind = generator.next() % 3
            let unit = kind == 0 ? pod("p\(index)", cpu: 500, gpus: Int64(1 + generator.next() % 2)) : pod("p\(index)", cpu: 500, gpuMilli: Int64(100 + generator.next() % 800))
            if let placement = scheduling.schedule(unit).placement { placed.append(placement) }
            for node in scheduling.cluster.nodes {
                #expect(node.gpus.allSatisfy { (0...1000).contains($0.freeMilli) })
            }
        }
        let demanded = placed.reduce(Int64(0)) { $0 + Simulation.gpuDemand($1.unit) }
        #expect(scheduling.cluster.gpuMilli.allocated == demanded)
        #expect(placed.count > 20 && placed.count < 400)
        for placement in placed.shuffled(using: &generator) { scheduling.release(placement) }
        #expect(scheduling.cluster.gpuMilli.allocated == 0)
    }

    @Test func gpuModelConstraintsAreRespected() {
        let scheduling = framework([.init(name: "spread", plugin: Plugins.scheduler("spread"))], nodes: [node("t4", gpus: 4, model: "T4"), node("a100", gpus: 4, model: "A100")])
        for index in 0..<4 {
            #expect(scheduling.schedule(pod("train-\(index)", cpu: 100, gpus: 1, models: ["A100"])).placement?.nodeName == "a100")
        }
        guard case .unschedulable(let why) = scheduling.schedule(pod("train-5", cpu: 100, gpus: 1, models: ["A100"])) else {
            Issue.record("the A100s are full; expected unschedulable")
            return
        }
        #expect(why.reasons["no GPU of a requested model"] == 1)
        #expect(why.reasons["insufficient whole GPUs"] == 1)
    }

    @Test func sharesGoToTheTightestGPU() throws {
        let scheduling = framework([.init(name: "binpack", plugin: Plugins.scheduler("binpack"))], nodes: [node("n", gpus: 3)])
        _ = try #require(scheduling.schedule(pod("a", cpu: 10, gpuMilli: 600)).placement)
        _ = try #require(scheduling.schedule(pod("b", cpu: 10, gpuMilli: 300)).placement)
        // b fits into a's GPU (400 free) instead of opening a fresh one.
        #expect(scheduling.cluster.nodes[0].gpus.map(\.freeMilli) == [100, 1000, 1000])
    }

    @Test func adaptiveSamplingStopsEarlyOnLargeClusters() {
        let scheduling = SchedulingFramework(profile: SchedulingProfile(name: "default", entries: [.init(name: "binpack", plugin: Plugins.scheduler("binpack"))]), nodes: (0..<2000).map { node("n\($0)") })
        _ = scheduling.schedule(pod("p"))
        // 50 % − 2000/125 % = 34 % of 2000 = 680 feasible nodes wanted, in batches of 256.
        #expect(scheduling.metrics.plugins["binpack"]?.scoreCalls == 1)
        #expect(scheduling.metrics.scheduled == 1)
    }

    @Test func fgdFillsAFragmentInsteadOfOpeningAGPU() {
        let fgd = Plugins.scheduler("fgd")
        fgd.observe(WorkloadDistribution(units: [pod("s", cpu: 100, gpuMilli: 500), pod("w", cpu: 100, gpus: 1)]))
        var partly = node("partly", gpus: 2)
        partly.gpus[0].freeMilli = 500
        partly.index = 0
        var fresh = node("fresh", gpus: 2)
        fresh.index = 1
        let scores = fgd.score(ScoreRequest(unit: pod("s", cpu: 100, gpuMilli: 500), nodes: [partly, fresh]))
        #expect(scores[0] == SchedulerAPI.maxNodeScore && scores[1] < scores[0])
    }
}

