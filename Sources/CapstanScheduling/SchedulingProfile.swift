import CapstanSDK

/// A named composition of scheduler plugins: every plugin's filter must pass a node, and a node's
/// score is the weighted sum of the plugins' scores. Workloads choose a profile by name.
public struct SchedulingProfile: Sendable {
    public struct Entry: Sendable {
        public var name: String
        public var plugin: any SchedulerPlugin
        public var weight: Int64

        public init(name: String, plugin: any SchedulerPlugin, weight: Int64 = 1) {
            self.name = name
            self.plugin = plugin
            self.weight = weight
        }
    }

    public var name: String
    public var entries: [Entry]
    /// Share of the nodes to look for feasible ones before scoring, 1...100. Nil: adaptive, as
    /// kube-scheduler does (50 % minus 1 % per 125 nodes, at least 5 %, at least 100 nodes).
    public var percentageOfNodesToScore: Int?
    /// Nodes per filter call: the plugin boundary is crossed once per batch.
    public var batchSize: Int

    public init(name: String, entries: [Entry], percentageOfNodesToScore: Int? = nil, batchSize: Int = 256) {
        self.name = name
        self.entries = entries
        self.percentageOfNodesToScore = percentageOfNodesToScore
        self.batchSize = max(1, batchSize)
    }

    /// How many feasible nodes to find before scoring, out of `total`.
    func feasibleNodesToFind(_ total: Int) -> Int {
        let minimum = 100
        if total <= minimum { return total }
        let percentage = percentageOfNodesToScore ?? max(5, 50 - total / 125)
        if percentage >= 100 { return total }
        return max(minimum, total * percentage / 100)
    }
}
