import CapstanScheduling
import Prometheus
import Synchronization

/// What `/metrics` exposes, in Prometheus' text format:
/// - `capstan_api_request_duration_seconds{method,route,code}`: API latency;
/// - `capstan_scheduling_duration_seconds{profile,result}`: one scheduling decision;
/// - `capstan_scheduler_plugin_calls_total{plugin,stage}`, `capstan_scheduler_plugin_seconds_total{plugin}`,
///   `capstan_scheduler_plugin_errors_total{plugin}`: per-plugin calls, time and reserve failures;
/// - `capstan_scheduler_bindings_total{result}`: bindings written (`bound`) or refused by the
///   store (`failed`, the placement released);
/// - `capstan_store_revision`, `capstan_watchers`;
/// - `capstan_leader` (1 while this server leads), `capstan_leader_term`,
///   `capstan_leader_transitions_total`, `capstan_leader_last_transition_timestamp_seconds`.
public final class ServerMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private static let latencyBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5),
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]
    let watchers: Gauge
    let revision: Gauge
    let leader: Gauge
    let leaderTerm: Gauge
    let leaderTransitions: Gauge
    let leaderLastTransition: Gauge
    /// The histograms by name and labels, made once: asking the registry on every request
    /// (a name built, labels compared under its lock) was 1.6 % of a busy server's CPU. The
    /// label values are bounded (methods, route names, status codes, profiles), so is this.
    private let histograms = Mutex<[[String]: DurationHistogram]>([:])

    public init() {
        leader = registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "capstan", metricName: "leader", unitName: "", helpText: "1 while this server leads (runs the scheduler and controllers), else 0."))
        leaderTerm = registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "capstan", metricName: "leader_term", unitName: "", helpText: "The term this server leads (the etcd revision of the leader key), 0 when following."))
        leaderTransitions = registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "capstan", subsystem: "leader", metricName: "transitions", unitName: "total", helpText: "Times this server started or stopped leading."))
        leaderLastTransition = registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "capstan", subsystem: "leader", metricName: "last_transition_timestamp", unitName: "seconds", helpText: "When this server last started or stopped leading."))
        watchers = registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "capstan", metricName: "watchers", unitName: "", helpText: "Open watch streams."))
        revision = registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "capstan", metricName: "store_revision", unitName: "", helpText: "The newest store revision."))
    }

    func recordRequest(method: String, route: String, code: Int, duration: Duration) {
        histogram(["request", method, route, String(code)]) { registry in
            registry.makeDurationHistogram(
                descriptor: MetricNameDescriptor(namespace: "capstan", subsystem: "api", metricName: "request_duration", unitName: "seconds", helpText: "API request latency."),
                labels: [("method", method), ("route", route), ("code", String(code))],
                buckets: Self.latencyBuckets
            )
        }.record(duration)
    }

    func recordDecision(profile: String, placed: Bool, duration: Duration) {
        let result = placed ? "placed" : "unschedulable"
        histogram(["decision", profile, result]) { registry in
            registry.makeDurationHistogram(
                descriptor: MetricNameDescriptor(namespace: "capstan", metricName: "scheduling_duration", unitName: "seconds", helpText: "Latency of one scheduling decision."),
                labels: [("profile", profile), ("result", result)],
                buckets: Self.latencyBuckets
            )
        }.record(duration)
    }

    /// The histogram for `key` (its name and label values), made by `make` the first time.
    private func histogram(_ key: [String], _ make: (PrometheusCollectorRegistry) -> DurationHistogram) -> DurationHistogram {
        if let made = histograms.withLock({ $0[key] }) { return made }
        let made = make(registry)
        histograms.withLock { $0[key] = made }
        return made
    }

    /// One pass's binding writes: `bound` made it to the store, `failed` did not.
    func recordBindings(bound: Int, failed: Int) {
        for (result, count) in [("bound", bound), ("failed", failed)] where count > 0 {
            registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "capstan", subsystem: "scheduler", metricName: "bindings", unitName: "total", helpText: "Bindings written to the store (bound) or refused by it (failed: the placement was released)."),
                                 labels: [("result", result)]).increment(by: Int64(count))
        }
    }

    /// Adds one pass's per-plugin numbers (the framework's own counters, which start at zero
    /// for each pass).
    func add(_ metrics: SchedulerMetrics) {
        for (name, timing) in metrics.plugins {
            for (stage, calls) in [("filter", timing.filterCalls), ("score", timing.scoreCalls)] where calls > 0 {
                registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "capstan", subsystem: "scheduler", metricName: "plugin_calls", unitName: "total", helpText: "Calls into a scheduler plugin, by stage (one call covers a batch of nodes)."), labels: [("plugin", name), ("stage", stage)]).increment(by: Int64(calls))
            }
            registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "capstan", subsystem: "scheduler", metricName: "plugin_seconds", unitName: "total", helpText: "Time spent inside a scheduler plugin."), labels: [("plugin", name)]).increment(by: Double(timing.nanoseconds) / 1e9)
            registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "capstan", subsystem: "scheduler", metricName: "plugin_errors", unitName: "total", helpText: "Reserve failures of a scheduler plugin."), labels: [("plugin", name)]).increment(by: Int64(timing.reserveFailures))
        }
    }

    func record(_ leadership: LeadershipState.Snapshot) {
        leader.set(leadership.leading ? 1.0 : 0.0)
        leaderTerm.set(Double(leadership.term ?? 0))
        leaderTransitions.set(Double(leadership.transitions) as Double)
        leaderLastTransition.set(leadership.lastTransition as Double)
    }

    /// The text exposition.
    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
