import CapstanAPI
import CapstanCore
import CapstanStore
import Foundation
import ServiceLifecycle

/// Notices nodes whose agent stopped heartbeating and cleans up after them and after deleted
/// objects, like Kubernetes' node lifecycle controller and event TTL:
/// - a Ready node not heard from within `heartbeatTimeout` becomes NotReady (and gets a
///   `NodeNotReady` event), so the scheduler stops placing there;
/// - instances on a node NotReady for `evictionTimeout` are removed (an Event says why), so their
///   workloads replace them on live nodes; instances marked for deletion on such a node are
///   removed at once, as no agent will;
/// - events about objects that no longer exist, and events older than `eventTTL`, are deleted.
final class NodeLifecycleController: ServiceLifecycle.Service {
    let writer: StoreWriter
    let heartbeatTimeout: Double
    let evictionTimeout: Double
    let eventTTL: Double
    let period: Duration
    private let recorder: EventRecorder

    init(writer: StoreWriter, heartbeatTimeout: Double, evictionTimeout: Double, eventTTL: Double = 3600, period: Duration = .seconds(5)) {
        self.writer = writer
        self.heartbeatTimeout = heartbeatTimeout
        self.evictionTimeout = evictionTimeout
        self.eventTTL = eventTTL
        self.period = period
        self.recorder = EventRecorder(writer: writer, source: "node-lifecycle")
    }

    func run() async throws {
        let subscription = try writer.store.bus.subscribe(to: .resources, after: try writer.store.revision)
        // The feed's tick drives the checks; the events themselves only end the loop at shutdown.
        for await _ in ChangeFeed(subscription: subscription).batches(every: period) {
            await check(now: Date().timeIntervalSince1970)
        }
    }

    func check(now: Double) async {
        func list(_ kind: String) async -> [AnyResource]? {
            try? await writer.read { store throws(StoreError) in try store.list(kind: kind).items }
        }
        guard let nodes = await list("Node"), let instances = await list("Instance"), let events = await list("Event") else { return }
        var notReadySince: [String: Double] = [:]
        var known = Set<String>()
        for case .node(var node) in nodes {
            known.insert("Node/\(node.metadata.name)")
            let beat = node.status.lastHeartbeat?.secondsSinceEpoch ?? 0
            if now - beat > heartbeatTimeout {
                notReadySince[node.metadata.name] = beat + heartbeatTimeout
                if node.status.ready {
                    node.status.ready = false
                    _ = try? await writer.update(.node(node))
                    await recorder.record("Node/\(node.metadata.name)", reason: "NodeNotReady", message: "no heartbeat for \(Int(now - beat))s; nothing new is placed here", type: .warning)
                }
            }
        }
        for case .instance(let instance) in instances {
            known.insert("Instance/\(instance.metadata.name)")
            guard let nodeName = instance.spec.nodeName else { continue }
            let lostAt = notReadySince[nodeName] ?? (nodes.contains { $0.name == nodeName } ? nil : 0)
            guard let lostAt else { continue }
            if instance.metadata.deletionTimestamp != nil || now - lostAt >= evictionTimeout {
                if instance.metadata.deletionTimestamp == nil {
                    await recorder.record("Instance/\(instance.metadata.name)", reason: "Evicted", message: "node \(nodeName) has been unreachable for \(Int(now - lostAt))s", type: .warning)
                }
                _ = try? await writer.delete(kind: "Instance", name: instance.metadata.name)
            }
        }
        for case .workload(let workload) in await list("Workload") ?? [] { known.insert("Workload/\(workload.metadata.name)") }
        for case .event(let event) in events {
            let age = now - (event.spec.lastTimestamp?.secondsSinceEpoch ?? now)
            let subjectGone = ["Instance/", "Node/", "Workload/"].contains { event.spec.involvedObject.hasPrefix($0) } && !known.contains(event.spec.involvedObject)
            // A deleted object's events stay a minute, for `describe` right after a delete.
            if age > eventTTL || (subjectGone && age > 60) {
                _ = try? await writer.delete(kind: "Event", name: event.metadata.name)
            }
        }
    }
}
