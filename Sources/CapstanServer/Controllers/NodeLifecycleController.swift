import CapstanAPI
import CapstanCore
import CapstanStore
import Foundation
import ServiceLifecycle

/// Notices nodes whose agent stopped heartbeating and cleans up after them and after deleted
/// objects, like Kubernetes' node lifecycle controller and event TTL:
/// - a Ready node whose ``Lease`` was not renewed within `heartbeatTimeout` becomes NotReady
///   (and gets a `NodeNotReady` event), so the scheduler stops placing there; when its agent
///   renews the lease again it is Ready again (`NodeReady`);
/// - instances on a node NotReady for `evictionTimeout` are removed (an Event says why), so their
///   workloads replace them on live nodes; instances marked for deletion on such a node are
///   removed at once, as no agent will;
/// - events about objects that no longer exist (after a minute), and events older than
///   `eventTTL`, are deleted.
///
/// It reads the shared informer's cache once a period (nothing it does is urgent to the
/// millisecond), so a write costs it nothing.
final class NodeLifecycleController: ServiceLifecycle.Service {
    let writer: StoreWriter
    let informer: SharedInformer
    let feed: SharedInformer.Feed
    /// `heartbeatTimeout` and `evictionTimeout` come from here.
    let options: ControlPlane.Options
    /// Events live this long (seconds).
    let eventTTL: Double = 3600
    private let recorder: EventRecorder
    /// Told once the controller has listed the store.
    let readiness: ReadinessGate?

    init(writer: StoreWriter, informer: SharedInformer, options: ControlPlane.Options, readiness: ReadinessGate? = nil) {
        (self.writer, self.informer, self.options, self.readiness) = (writer, informer, options, readiness)
        // Its checks run once a period on what the informer holds then: changes need not wake it.
        feed = informer.feed(kinds: [])
        recorder = EventRecorder(writer: writer, source: "node-lifecycle")
    }

    /// How often to look: a quarter of the heartbeat timeout, between 0.5 and 5 seconds.
    var period: Duration { .milliseconds(Int64(max(500, min(5000, options.heartbeatTimeout * 250)))) }

    struct Cache {
        var nodes: [String: Node] = [:]
        /// Node name → its lease's last renewal (seconds since the epoch).
        var renewals: [String: Double] = [:]
        /// Node → its instances (name → marked for deletion).
        var instancesByNode: [String: [String: Bool]] = [:]
        /// `Kind/name` of every Instance, Node and Workload.
        var existing = Set<String>()
        /// Event name → what it is about and when it last happened.
        var events: [String: (involved: String, last: Double)] = [:]

        init() {}

        /// What the checks need, read from the shared informer's cache and its node index in
        /// one pass (each instance once, not once per node).
        init(_ shared: borrowing SharedInformer.Cache) {
            for case .node(let node) in shared.all("Node") { nodes[node.metadata.name] = node }
            for case .lease(let lease) in shared.all("Lease") { renewals[lease.metadata.name] = lease.spec.renewTime?.secondsSinceEpoch }
            for (node, names) in shared.instancesByNode {
                var marked: [String: Bool] = [:]
                for name in names {
                    guard let instance = shared.instance(name) else { continue }
                    marked[name] = instance.metadata.deletionTimestamp != nil
                }
                instancesByNode[node] = marked
            }
            for kind in ["Instance", "Node", "Workload"] {
                for name in shared.objects[kind]?.keys ?? [:].keys { existing.insert("\(kind)/\(name)") }
            }
            for case .event(let record) in shared.all("Event") {
                events[record.metadata.name] = (record.spec.involvedObject, record.spec.lastTimestamp?.secondsSinceEpoch ?? Date().timeIntervalSince1970)
            }
        }
    }

    func run() async throws {
        // Ends when the informer stops (graceful shutdown). Its feed takes no changes, only
        // resyncs; the checks run on each tick (an empty batch, once a period), on what the
        // informer holds then.
        let clock = ContinuousClock()
        var lastCheck = clock.now - period
        var listed = false
        for await batch in feed.batches(every: period) {
            if !listed, batch.contains(where: { if case .resync = $0 { true } else { false } }) {
                listed = true
                readiness?.ready("nodes")
            }
            guard listed, batch.isEmpty || clock.now - lastCheck >= period else { continue }
            lastCheck = clock.now
            let cache = informer.read { Cache($0) }
            await check(cache, now: Date().timeIntervalSince1970)
        }
        // Stay until this service's own turn to stop, so the group never sees it end early.
        try? await gracefulShutdown()
    }

    /// The reason instances of a lost node get; their agent replaces it with what it knows when
    /// the node is back.
    static let nodeLostReason = "NodeLost"

    /// Status must not claim Running and Ready for instances nobody can see: those of a node
    /// that fell silent become `Unknown`, not ready, without a pid (issue 9).
    func markUnknown(_ instances: [String], node: String, silentFor seconds: Int) async {
        for name in instances {
            for _ in 0..<3 {
                guard case .instance(var instance)? = try? await writer.get(kind: "Instance", name: name),
                      instance.status.phase != .succeeded, instance.status.phase != .failed, instance.status.phase != .unknown else { break }
                instance.status.phase = .unknown
                instance.status.ready = false
                instance.status.pid = nil
                instance.status.reason = Self.nodeLostReason
                instance.status.message = "node \(node) has not been heard from for \(seconds)s; what runs there is unknown"
                if (try? await writer.update(.instance(instance))) != nil { break }
            }
        }
    }

    func check(_ cache: Cache, now: Double) async {
        for (name, var node) in cache.nodes {
            // The lease's renewal; for an agent of before SDK 1.3 (no lease), its node heartbeat.
            let beat = max(cache.renewals[name] ?? 0, node.status.lastHeartbeat?.secondsSinceEpoch ?? 0)
            guard now - beat > options.heartbeatTimeout else {
                if !node.status.ready && cache.renewals[name] != nil {
                    node.status.ready = true
                    if (try? await writer.update(.node(node))) != nil {
                        await recorder.record("Node/\(name)", reason: "NodeReady", message: "its agent renews its lease again")
                    }
                }
                continue
            }
            if node.status.ready {
                node.status.ready = false
                _ = try? await writer.update(.node(node))
                await recorder.record("Node/\(name)", reason: "NodeNotReady", message: "no heartbeat for \(Int(now - beat))s; nothing new is placed here", type: .warning)
                await markUnknown(Array((cache.instancesByNode[name] ?? [:]).filter { !$0.value }.keys), node: name, silentFor: Int(now - beat))
            }
            let lostFor = now - beat - options.heartbeatTimeout
            for (instance, marked) in cache.instancesByNode[name] ?? [:] where marked || lostFor >= options.evictionTimeout {
                if !marked {
                    await recorder.record("Instance/\(instance)", reason: "Evicted", message: "node \(name) has been unreachable for \(Int(now - beat))s", type: .warning)
                }
                _ = try? await writer.delete(kind: "Instance", name: instance)
            }
        }
        // Instances bound to a node that no longer exists.
        for (node, instances) in cache.instancesByNode where cache.nodes[node] == nil {
            for instance in instances.keys { _ = try? await writer.delete(kind: "Instance", name: instance) }
        }
        var expired: [String] = []
        for (name, event) in cache.events {
            let age = now - event.last
            let subjectGone = ["Instance/", "Node/", "Workload/"].contains { event.involved.hasPrefix($0) } && !cache.existing.contains(event.involved)
            // A deleted object's events stay a minute, for `describe` right after a delete.
            if age > eventTTL || (subjectGone && age > 60) { expired.append(name) }
        }
        await withTaskGroup(of: Void.self) { group in
            for name in expired {
                group.addTask { _ = try? await self.writer.delete(kind: "Event", name: name) }
            }
        }
    }
}
