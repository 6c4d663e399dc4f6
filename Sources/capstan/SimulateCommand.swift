import ArgumentParser
import CapstanCore
import CapstanScheduling
import CapstanSDK
import Foundation
import PluginHost

/// `capstan simulate`: replay a cluster trace through a scheduling profile.
struct SimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Replay a node list and a pod list through a scheduler profile, with the FGD paper's protocol.",
        discussion: """
        Nodes and pods are CSV files in the format of Alibaba's openb traces, or Capstan manifests \
        (.yaml: Node documents with status.allocatable and status.gpus; Workload documents, each \
        replica one pod). The pod list, in creation order, is inflated with random draws until the \
        GPU requested would exceed --inflation × the cluster's GPU capacity (0: no inflation); each \
        pod is scheduled once, in order. Prints the GPU allocation ratio, failed pods, \
        fragmentation and time, per seed and on average.
        """)

    @Option(help: "The node list: CSV (sn,cpu_milli,memory_mib,gpu,model) or Node manifests (.yaml).") var nodes: String
    @Option(help: "The pod list: CSV (name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,…) or Workload manifests (.yaml).") var pods: String
    @Option(help: "A profile from the config, or a scheduler plugin. Default: the config's defaults.scheduler; fgd without --config.") var scheduler: String?
    @Option(name: .shortAndLong, help: "The operator config (capstan.yaml). Default: the in-tree plugins.") var config: String?
    @Option(help: "Seeds: a list (42,43) or a range (42-51).") var seeds = "42-51"
    @Option(help: "Arrival, as a multiple of the cluster's GPU capacity; 0 schedules the pod list as given.") var inflation = 1.3
    @Option(help: "Share of nodes to filter before scoring (1-100). Default: the profile's, else 100.") var percentageOfNodesToScore: Int?
    @Option(help: "The original list's order: creation (the traces' README) or shuffled (what the paper's simulator does).") var order: Simulation.Order = .creation
    @Flag(help: "Print JSON.") var json = false

    /// CSV trace files, or manifest files (`.yaml`/`.yml`: Node and Workload documents).
    func loadTrace() throws -> ClusterTrace {
        func isManifest(_ path: String) -> Bool { path.hasSuffix(".yaml") || path.hasSuffix(".yml") }
        switch (isManifest(nodes), isManifest(pods)) {
        case (false, false):
            return try ClusterTrace.load(nodesFile: nodes, podsFile: pods)
        case (true, true):
            return ClusterTrace(manifests: try ManifestReader.read(file: nodes), try ManifestReader.read(file: pods))
        default:
            throw CapstanCore.ValidationError(subject: "--nodes and --pods", problems: [ValidationProblem(path: "", message: "give two CSV trace files or two manifest files (.yaml), not one of each")])
        }
    }

    func validate() throws {
        guard inflation >= 0, inflation.isFinite else { throw ArgumentParser.ValidationError("--inflation \(inflation) must be 0 or more (1.3 is the paper's protocol)") }
        if let percentage = percentageOfNodesToScore, !(1...100).contains(percentage) {
            throw ArgumentParser.ValidationError("--percentage-of-nodes-to-score \(percentage) is outside 1...100")
        }
    }

    /// Says what is wrong with the input on stderr; exit status 2.
    func failure(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("capstan: \(message)\n".utf8))
        return ExitCode(2)
    }

    func run() throws {
        let seedList = try parseSeeds(seeds)
        let trace: ClusterTrace
        do {
            trace = try loadTrace()     // ClusterTrace.ParseError or ValidationError, each naming file and place
        } catch {
            throw failure("\(error)")
        }
        guard !trace.nodes.isEmpty else { throw failure("\(nodes) has no nodes") }
        guard !trace.pods.isEmpty else { throw failure("\(pods) has no pods: nothing to place") }
        let configuration = try config.map { try HostConfiguration.load(path: $0) }
            ?? HostConfiguration.builtIn(executableDirectory: ExecutablePath.directory, stateDirectory: NSTemporaryDirectory() + "capstan-simulate")
        let host = PluginHost.load(configuration, log: { level, message in
            if level >= .warning { FileHandle.standardError.write(Data("\(message)\n".utf8)) }
        })
        let wanted = scheduler ?? (config == nil ? "fgd" : nil)
        guard var profile = host.schedulingProfile(named: wanted, percentageOfNodesToScore: percentageOfNodesToScore) else {
            let available = host.profiles.map(\.name) + host.registry.entries.filter { $0.kind == .scheduler }.map(\.name)
            throw failure("no profile or scheduler plugin named \"\(wanted ?? "(the config's default)")\"; available: \(available.joined(separator: ", "))")
        }
        // The paper's protocol looks at every node, unless the option or the profile says otherwise.
        if profile.percentageOfNodesToScore == nil { profile.percentageOfNodesToScore = 100 }
        var runs: [Simulation.Run] = []
        for seed in seedList {
            let run = Simulation.run(trace, profile: profile, seed: seed, inflation: inflation, order: order)
            runs.append(run)
            if !json {
                print("seed \(seed): GPU allocated \(percent(run.gpuAllocationRatio)), \(run.failed) of \(run.pods) pods failed, fragmentation \(percent(run.fragmentationRatio)) of free GPU, \(String(format: "%.3f", run.seconds)) s (p99 decision \(String(format: "%.0f", run.p99DecisionMicroseconds)) µs; in plugins: \(run.pluginSeconds.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.3f", $0.value)) s / \(run.pluginCalls[$0.key] ?? 0) calls" }.joined(separator: ", ")))")
            }
        }
        let summary = Summary(scheduler: profile.name, nodes: trace.nodes.count, podList: trace.pods.count, inflation: inflation, order: order, runs: runs)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(summary), as: UTF8.self))
        } else {
            print("\(profile.name): mean GPU allocation \(percent(summary.meanGPUAllocationRatio)) over \(runs.count) seeds; mean failed pods \(String(format: "%.1f", summary.meanFailed)); mean time \(String(format: "%.3f", summary.meanSeconds)) s per experiment")
        }
    }

    struct Summary: Codable {
        var scheduler: String
        var nodes: Int
        var podList: Int
        var inflation: Double
        var order: Simulation.Order
        var runs: [Simulation.Run]
        var meanGPUAllocationRatio: Double
        var meanFailed: Double
        var meanSeconds: Double

        init(scheduler: String, nodes: Int, podList: Int, inflation: Double, order: Simulation.Order, runs: [Simulation.Run]) {
            self.scheduler = scheduler
            self.order = order
            self.nodes = nodes
            self.podList = podList
            self.inflation = inflation
            self.runs = runs
            let count = Double(max(1, runs.count))
            meanGPUAllocationRatio = runs.reduce(0) { $0 + $1.gpuAllocationRatio } / count
            meanFailed = Double(runs.reduce(0) { $0 + $1.failed }) / count
            meanSeconds = runs.reduce(0) { $0 + $1.seconds } / count
        }
    }

    func percent(_ ratio: Double) -> String { String(format: "%.2f %%", ratio * 100) }

    func parseSeeds(_ text: String) throws -> [UInt64] {
        let parts = text.split(separator: "-")
        if parts.count == 2, let low = UInt64(parts[0]), let high = UInt64(parts[1]), low <= high { return Array(low...high) }
        let list = text.split(separator: ",").compactMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
        guard !list.isEmpty, list.count == text.split(separator: ",").count else {
            throw ArgumentParser.ValidationError("--seeds \"\(text)\" is not a list (42,43) or a range (42-51)")
        }
        return list
    }
}

extension Simulation.Order: ExpressibleByArgument {}
