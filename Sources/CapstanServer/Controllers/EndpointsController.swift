import CapstanAPI
import CapstanCore
import CapstanStore
import Foundation
import ServiceLifecycle

/// Keeps every Service's **Endpoints** — the addresses of its ready instances, one entry per
/// instance and service port — and its status (`readyEndpoints`, an `Endpoints` condition that
/// says why there are none), like Kubernetes' endpoints controller.
///
/// Event-driven on the shared informer: a changed instance recomputes the services that select
/// it (or listed it), so an instance that stops being ready, exits or is deleted leaves its
/// services' endpoints within one batch of its status write. A periodic pass converges anything
/// missed (an Endpoints object someone edited, a failed write).
final class EndpointsController: ServiceLifecycle.Service {
    let writer: StoreWriter
    let informer: SharedInformer
    let feed: SharedInformer.Feed
    let readiness: ReadinessGate?
    private let recorder: EventRecorder
    /// How often everything is recomputed regardless of changes.
    static let resyncPeriod = Duration.seconds(30)

    init(writer: StoreWriter, informer: SharedInformer, readiness: ReadinessGate? = nil) {
        (self.writer, self.informer, self.readiness) = (writer, informer, readiness)
        // Endpoints follow instances and services; their own changes are compared too.
        feed = informer.feed(kinds: ["Instance", "Service", "Endpoints"])
        recorder = EventRecorder(writer: writer, source: "endpoints-controller")
    }

    /// What one service should have, computed from the cache.
    struct Desired: Equatable {
        var addresses: [EndpointAddress]
        var status: ServiceStatus
    }

    func run() async throws {
        var listed = false
        var lastFull = ContinuousClock.now
        /// Instance → the services whose endpoints listed it last time.
        var membership: [String: Set<String>] = [:]
        /// Service → the instances its endpoints listed last time (the reverse of `membership`).
        var members: [String: Set<String>] = [:]
        for await batch in feed.batches(every: Self.resyncPeriod) {
            // Leases and events keep batches coming: the resync goes by the clock alone.
            var full = ContinuousClock.now - lastFull >= Self.resyncPeriod
            var instances = Set<String>()
            var services = Set<String>()
            for delivery in batch {
                switch delivery {
                case .resync:
                    full = true
                case .event(let event):
                    switch event.object {
                    case .instance(let instance): instances.insert(instance.metadata.name)
                    case .service(let service): services.insert(service.metadata.name)
                    case .endpoints(let endpoints): services.insert(endpoints.metadata.name)
                    default: break
                    }
                }
            }
            if full { listed = true; lastFull = ContinuousClock.now }
            guard listed else { continue }
            let work = informer.read { cache -> [(name: String, desired: Desired?, current: Endpoints?, service: CapstanCore.Service?)] in
                var names = services
                let allServices = cache.all("Service").compactMap { object -> CapstanCore.Service? in
                    if case .service(let service) = object { return service }
                    return nil
                }
                if full {
                    names.formUnion(allServices.map(\.metadata.name))
                    for case .endpoints(let endpoints) in cache.all("Endpoints") { names.insert(endpoints.metadata.name) }
                } else if !instances.isEmpty {
                    for name in instances {
                        names.formUnion(membership[name] ?? [])
                        guard let instance = cache.instance(name) else { continue }
                        for service in allServices where Self.selects(service, instance) { names.insert(service.metadata.name) }
                    }
                }
                return names.map { name in
                    var service: CapstanCore.Service?
                    if case .service(let found)? = cache.objects["Service"]?[name] { service = found }
                    var current: Endpoints?
                    if case .endpoints(let found)? = cache.objects["Endpoints"]?[name] { current = found }
                    return (name, service.map { Self.desired(for: $0, instances: cache.all("Instance")) }, current, service)
                }
            }
            for item in work {
                // Membership is what was computed, written or not: the next change of a listed
                // instance recomputes this service either way.
                for instance in members[item.name] ?? [] {
                    membership[instance]?.remove(item.name)
                    if membership[instance]?.isEmpty == true { membership[instance] = nil }
                }
                let listedNow = Set((item.desired?.addresses ?? []).map(\.instance))
                members[item.name] = listedNow.isEmpty ? nil : listedNow
                for instance in listedNow { membership[instance, default: []].insert(item.name) }
                await reconcile(item.name, desired: item.desired, current: item.current, service: item.service)
            }
            if full { readiness?.ready("endpoints") }
        }
        try? await gracefulShutdown()
    }

    /// Writes what differs; a failure is logged as an Event and retried by the next pass.
    private func reconcile(_ name: String, desired: Desired?, current: Endpoints?, service: CapstanCore.Service?) async {
        guard let desired, let service else {
            // The service is gone: so are its endpoints.
            if let current, current.metadata.owner == "Service/\(name)" {
                _ = try? await writer.delete(kind: "Endpoints", name: name, revision: current.metadata.revision)
            }
            return
        }
        do {
            if var current {
                if current.spec.addresses != desired.addresses || current.metadata.owner != "Service/\(name)" {
                    current.spec.addresses = desired.addresses
                    current.metadata.owner = "Service/\(name)"
                    _ = try await writer.update(.endpoints(current))
                }
            } else {
                var fresh = Endpoints(name: name, spec: EndpointsSpec(addresses: desired.addresses))
                fresh.metadata.owner = "Service/\(name)"
                _ = try await writer.create(.endpoints(fresh))
            }
            var status = desired.status
            for condition in service.status.conditions where condition.type == "Endpoints" {
                if condition.status == status.conditions.first?.status { status.conditions[0].lastTransitionTime = condition.lastTransitionTime }
            }
            if status.conditions.first?.lastTransitionTime == nil {
                status.conditions[0].lastTransitionTime = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
            }
            var kept = service.status.conditions.filter { $0.type != "Endpoints" }
            kept.insert(contentsOf: status.conditions, at: 0)
            status.conditions = kept
            if status != service.status {
                let before = service.status.conditions.first { $0.type == "Endpoints" }
                var updated = service
                updated.status = status
                _ = try await writer.update(.service(updated))
                if let now = status.conditions.first, now.status == false, before?.reason != now.reason {
                    await recorder.record("Service/\(name)", reason: now.reason, message: now.message, type: .warning)
                }
            }
        } catch StoreError.conflict {
            // Someone wrote first; the informer brings the change and the next batch redoes it.
        } catch {
            await recorder.record("Service/\(name)", reason: "EndpointsFailed", message: "could not write endpoints: \(error)", type: .warning)
        }
    }

    /// True when the instance carries every label of the service's selector.
    static func selects(_ service: CapstanCore.Service, _ instance: Instance) -> Bool {
        !service.spec.selector.isEmpty && service.spec.selector.allSatisfy { instance.metadata.labels[$0.key] == $0.value }
    }

    /// The ready instances' addresses for each port, sorted, and the status that goes with them.
    static func desired(for service: CapstanCore.Service, instances: some Sequence<AnyResource>) -> Desired {
        var addresses: [EndpointAddress] = []
        var matched = 0
        var ready = 0
        var missingPort: (instance: String, port: String)?
        for case .instance(let instance) in instances where selects(service, instance) && instance.metadata.deletionTimestamp == nil {
            matched += 1
            guard instance.status.phase == .running, instance.status.ready, let address = instance.status.addresses.first(where: { IPv4Address($0) != nil }) else { continue }
            var served = false
            for port in service.spec.ports {
                let target: Int
                if let name = port.targetPortName {
                    guard let named = instance.spec.template.ports.first(where: { $0.name == name }) else {
                        missingPort = (instance.metadata.name, name)
                        continue
                    }
                    target = named.containerPort
                } else {
                    target = port.targetPort
                }
                let proto = port.protocol ?? "tcp"
                var reached = target
                if instance.status.hostNetwork {
                    // On the node's network the instance listens on the host port it was given.
                    reached = instance.status.ports.first { $0.containerPort == target && $0.protocol == proto }?.hostPort ?? target
                }
                var entry = EndpointAddress(instance: instance.metadata.name, node: instance.spec.nodeName, address: address, port: reached, ready: true)
                entry.portName = port.name
                entry.protocol = proto
                addresses.append(entry)
                served = true
            }
            if served { ready += 1 }
        }
        addresses.sort { ($0.portName ?? "", $0.instance) < ($1.portName ?? "", $1.instance) }
        let condition: Condition
        let selector = service.spec.selector.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
        if ready > 0 {
            condition = Condition(type: "Endpoints", status: true, reason: "ReadyEndpoints", message: "\(ready) ready instance\(ready == 1 ? "" : "s") of \(matched) selected by \(selector)")
        } else if matched == 0 {
            condition = Condition(type: "Endpoints", status: false, reason: "NoMatchingInstances", message: "selector \(selector) matches no instance; check the labels of the workload's template")
        } else if let missingPort {
            condition = Condition(type: "Endpoints", status: false, reason: "NoSuchPort", message: "instance \(missingPort.instance) has no port named \"\(missingPort.port)\" (targetPort); name it in the template's ports")
        } else {
            condition = Condition(type: "Endpoints", status: false, reason: "NoReadyEndpoints", message: "\(matched) instance\(matched == 1 ? "" : "s") selected by \(selector), none ready with an address")
        }
        return Desired(addresses: addresses, status: ServiceStatus(conditions: [condition], readyEndpoints: ready))
    }
}
