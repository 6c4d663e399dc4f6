import CapstanScheduling
import CapstanSDK
import Testing

@Suite struct SimulationTests {
    let nodesCSV = """
    sn,cpu_milli,memory_mib,gpu,model
    n0,32000,131072,4,T4
    n1,64000,262144,8,V100
    n2,16000,65536,0,
    """
    let podsCSV = """
    name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
    p2,4000,8192,1,1000,,LS,Running,20,0,0
    p0,2000,4096,1,500,,LS,Running,0,0,0
    p1,1000,2048,0,0,,BE,Running,10,0,0
    p3,8000,16384,2,1000,V100,LS,Running,30,0,0
    """

    /// Issue 9: a CSV with Windows line ends read as one line, so 0 pods and "0 %" without a word.
    @Test func csvFilesWithCRLFLineEndsReadEveryRow() throws {
        let nodes = try ClusterTrace.parseNodes(nodesCSV.replacingOccurrences(of: "\n", with: "\r\n"), file: "nodes.csv")
        let pods = try ClusterTrace.parsePods(podsCSV.replacingOccurrences(of: "\n", with: "\r\n"), file: "pods.csv")
        #expect(nodes.count == (try ClusterTrace.parseNodes(nodesCSV, file: "nodes.csv")).count && !nodes.isEmpty)
        #expect(pods.count == (try ClusterTrace.parsePods(podsCSV, file: "pods.csv")).count && !pods.isEmpty)
    }

    func trace() throws -> ClusterTrace {
        ClusterTrace(nodes: try ClusterTrace.parseNodes(nodesCSV, file: "nodes.csv"), pods: try ClusterTrace.parsePods(podsCSV, file: "pods.csv"))
    }

    @Test func parsesTracesInCreationOrder() throws {
        let trace = try trace()
        #expect(trace.nodes.map(\.gpus.count) == [4, 8, 0])
        #expect(trace.nodes[1].allocatable.memoryBytes == 262_144 << 20)
        #expect(trace.pods.map(\.name) == ["p0", "p1", "p2", "p3"])
        #expect(trace.pods[0].requests.extended == ["gpu-milli": 500])
        #expect(trace.pods[2].requests.extended == ["gpu": 1])
        #expect(trace.pods[3].requests.extended == ["gpu": 2] && trace.pods[3].gpuModels == ["V100"])
    }

    @Test func malformedRowsAreReportedByLineNumber() {
        let bad = """
        name,cpu_milli,memory_mib,num_gpu,gpu_milli
        ok,1000,1024,0,0
        p1,lots,1024,0,0
        p2,1000,1024,1
        p3,1000,1024,1,2000
        """
        do {
            _ = try ClusterTrace.parsePods(bad, file: "pods.csv")
            Issue.record("expected errors")
        } catch let error as ClusterTrace.ParseError {
            #expect(error.description == """
            pods.csv:3: cpu_milli "lots" is not an integer in 0...\(Int64.max / 4096)
            pods.csv:4: has 4 fields; the header has 5
            pods.csv:5: gpu_milli "2000" is not an integer in 0...1000
            """)
        } catch {
            Issue.record("unexpected \(error)")
        }
        #expect(throws: ClusterTrace.ParseError.self) { try ClusterTrace.parseNodes("sn,cpu_milli\nx,1\n", file: "nodes.csv") }
    }

    @Test func inflationStopsBeforeExceedingTheTarget() throws {
        let pods = try trace().pods
        let inflated = Simulation.inflate(pods, capacityMilli: 12_000, factor: 1.3, seed: 42)
        #expect(Array(inflated.prefix(4)) == pods)
        let requested = inflated.reduce(Int64(0)) { $0 + Simulation.gpuDemand($1) }
        #expect(requested <= 15_600)
        #expect(requested > 15_600 - 2000)
        #expect(Simulation.inflate(pods, capacityMilli: 12_000, factor: 1.3, seed: 42) == inflated)
        #expect(Simulation.inflate(pods, capacityMilli: 12_000, factor: 1.3, seed: 43) != inflated)
    }

    @Test func inflationLeavesAListWithoutGPUDemandAlone() throws {
        let cpuOnly = try trace().pods.filter { Simulation.gpuDemand($0) == 0 }
        #expect(!cpuOnly.isEmpty)
        // Would never reach the target: returned as it is rather than looping.
        #expect(Simulation.inflate(cpuOnly, capacityMilli: 12_000, factor: 1.3, seed: 42) == cpuOnly)
        #expect(Simulation.inflate(cpuOnly, capacityMilli: 0, factor: 1.3, seed: 42) == cpuOnly)
        // Factor 0 schedules the list as given.
        let pods = try trace().pods
        #expect(Simulation.inflate(pods, capacityMilli: 12_000, factor: 0, seed: 42) == pods)
    }

    @Test func shuffledOrderIsASeededPermutation() throws {
        let pods = (0..<50).map { SchedulingUnit(name: "p\($0)", requests: ResourceVector(cpuMilli: Int64($0))) }
        let first = Simulation.ordered(pods, .shuffled, seed: 42)
        #expect(first.map(\.name).sorted() == pods.map(\.name).sorted())
        #expect(first != pods.sorted { $0.name < $1.name })
        #expect(Simulation.ordered(pods.reversed(), .shuffled, seed: 42) == first)   // input order does not matter
        #expect(Simulation.ordered(pods, .shuffled, seed: 43) != first)
        #expect(Simulation.ordered(pods, .creation, seed: 42) == pods)
    }

    @Test func simulationIsDeterministicForASeed() throws {
        let trace = try trace()
        for name in ["fgd", "bestfit"] {
            let profile = SchedulingProfile(name: name, entries: [.init(name: name, plugin: Plugins.scheduler(name))], percentageOfNodesToScore: 100)
            for order in Simulation.Order.allCases {
                let first = Simulation.run(trace, profile: profile, seed: 42, inflation: 1.3, order: order)
                let second = Simulation.run(trace, profile: profile, seed: 42, inflation: 1.3, order: order)
                #expect(first.placed == second.placed && first.gpuAllocatedMilli == second.gpuAllocatedMilli && first.fragmentationRatio == second.fragmentationRatio)
            }
            let first = Simulation.run(trace, profile: profile, seed: 42, inflation: 1.3)
            #expect(first.gpuTotalMilli == 12_000)
            #expect(first.gpuAllocationRatio > 0.5 && first.gpuAllocationRatio <= 1)
        }
    }

    @Test func fragmentationMeasureFollowsThePaper() {
        let measure = GPUFragmentation(workload: WorkloadDistribution(shapes: [
            .init(requests: ResourceVector(cpuMilli: 1000, extended: ["gpu-milli": 500]), weight: 1),
            .init(requests: ResourceVector(cpuMilli: 1000, extended: ["gpu": 1]), weight: 1),
        ]))
        // GPUs free 300 and 1000: the 300 is a fragment for both shapes.
        #expect(measure.expected(cpuFree: 8000, gpuFree: [300, 1000]) == 300)
        // Free 600 and 1000: a fragment only for whole-GPU requests (half the mix).
        #expect(measure.expected(cpuFree: 8000, gpuFree: [600, 1000]) == 300)
        // Too little cpu for anything: all free GPU is fragmented.
        #expect(measure.expected(cpuFree: 500, gpuFree: [600, 1000]) == 1600)
    }
}
