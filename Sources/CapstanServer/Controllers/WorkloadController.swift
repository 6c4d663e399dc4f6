import CapstanAPI
import CapstanCore
import CapstanStore
import Foundation
import ServiceLifecycle

/// Keeps each Workload's instances: as many as `replicas`, of its current template, replaced by
/// a rolling update when the template changes; and its status (replicas, ready, updated).
///
/// - Instance names are deterministic: `<workload>-<template hash>-<ordinal>`. Scaling up takes
///   the lowest free ordinals, scaling down removes the highest.
/// - A rolling update creates instances of the new template while the total stays within
///   `replicas + maxSurge`, and removes old ones while the Ready count stays at least
///   `replicas - maxUnavailable` (old instances that are not Ready go first, as they count for
///   nothing).
/// - Removing an instance on a node is graceful: it is marked for deletion and its agent stops it
///   within the template's grace period, then deletes it. A deleted workload's instances go the
///   same way.
/// - Restarts (backoff, probes) are the agents' job: an instance's process restarting does not
///   make a new instance.
final class WorkloadController: ServiceLifecycle.Service {
    let writer: StoreWriter
    let informer: SharedInformer
    private let feed: SharedInformer.Feed
    private let recorder: EventRecorder
    /// Told once the controller has listed the store.
    let readiness: ReadinessGate?

    init(writer: StoreWriter, informer: SharedInformer, readiness: ReadinessGate? = nil) {
        self.readiness = readiness
        self.writer = writer
        self.informer = informer
        self.feed = informer.feed()
        self.recorder = EventRecorder(writer: writer, source: "workload-controller")
    }

    /// The workload a change concerns, if any.
    static func workload(of event: ResourceEvent) -> String? {
        switch event.object {
        case .workload(let workload): return workload.metadata.name
        case .instance(let instance):
            guard let owner = instance.metadata.owner, owner.hasPrefix("Workload/") else { return nil }
            return String(owner.dropFirst("Workload/".count))
        default: return nil
        }
    }

    func run() async throws {
        // Ends when the informer stops (graceful shutdown).
        for await batch in feed.batches(every: .seconds(30)) {
            var dirty = Set<String>()
            var everything = batch.isEmpty  // the periodic resync: everything, in case a write failed
            for delivery in batch {
                switch delivery {
                case .event(let event): if let name = Self.workload(of: event) { dirty.insert(name) }
                case .resync:
                    everything = true
                    readiness?.ready("workloads")
                }
            }
            if everything { dirty.formUnion(informer.read { $0.workloadNames() }) }
            await reconcile(dirty)
        }
        // Stay until this service's own turn to stop, so the group never sees it end early.
        try? await gracefulShutdown()
    }

    /// Reconciles the named workloads from the informer's cache; their writes go out
    /// concurrently (one group commit).
    func reconcile(_ names: Set<String>) async {
        var operations: [StoreOperation] = []
        var events: [(String, String, String)] = []
        for name in names.sorted() {
            let (workload, owned) = informer.read { ($0.workload(name), $0.instances(ownedBy: "Workload/\(name)")) }
            let plan = Self.plan(workload: workload, owned: owned)
            operations += plan.operations
            events += plan.events.map { ("Workload/\(name)", $0.reason, $0.message) }
        }
        guard !operations.isEmpty || !events.isEmpty else { return }
        await withTaskGroup(of: Void.self) { group in
            for operation in operations {
                group.addTask { _ = try? await self.writer.perform(operation) }
            }
            for (object, reason, message) in events {
                group.addTask { await self.recorder.record(object, reason: reason, message: message) }
            }
        }
    }

    struct Plan {
        var operations: [StoreOperation] = []
        var events: [(reason: String, message: String)] = []
    }

    /// What to write for one workload: pure, so tests can drive it.
    static func plan(workload: Workload?, owned: [Instance]) -> Plan {
        var plan = Plan()
        let live = owned.filter { $0.metadata.deletionTimestamp == nil }
        guard let workload else {
            for instance in live { plan.operations.append(remove(instance)) }
            return plan
        }
        // A workload stored before a range it breaks was checked: say so once (condition and
        // Event) and leave its instances alone; the other workloads go on.
        let problems = workload.validate()
        if !problems.isEmpty {
            var updated = workload
            let message = problems.map(\.description).joined(separator: "; ") + ". Fix the manifest and apply it again; until then its instances are left as they are"
            if updated.status.conditions.set(Condition(type: Self.validCondition, status: false, reason: "InvalidSpec", message: message, lastTransitionTime: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970))) {
                plan.operations.append(.update(.workload(updated)))
                plan.events.append(("InvalidSpec", message))
            }
            return plan
        }
        let hash = TemplateHash.of(workload.spec)
        let replicas = workload.spec.replicas
        let current = live.filter { $0.metadata.labels[WellKnown.templateHashLabel] == hash }
        let old = live.filter { $0.metadata.labels[WellKnown.templateHashLabel] != hash }
        let strategy = workload.spec.strategy
        var removing = Set<String>()

        // How many of the current template to add, within the surge budget during an update.
        var toCreate = max(0, replicas - current.count)
        if !old.isEmpty { toCreate = min(toCreate, max(0, replicas + strategy.maxSurge - live.count)) }
        let taken = Set(current.compactMap { ordinal(of: $0.metadata.name) })
        var next = 0
        var created = 0
        while created < toCreate {
            if !taken.contains(next) {
                plan.operations.append(.create(.instance(makeInstance(workload, hash: hash, ordinal: next))))
                created += 1
            }
            next += 1
        }
        if created > 0 {
            plan.events.append(("ScalingUp", "creating \(created) instance(s) of template \(hash)"))
        }

        // Extra instances of the current template: highest ordinals first.
        let surplus = current.count - replicas
        if surplus > 0 {
            for instance in current.sorted(by: { (ordinal(of: $0.metadata.name) ?? 0) > (ordinal(of: $1.metadata.name) ?? 0) }).prefix(surplus) {
                plan.operations.append(remove(instance))
                removing.insert(instance.metadata.name)
            }
            plan.events.append(("ScalingDown", "removing \(surplus) instance(s)"))
        }

        // Old instances: the ones not Ready go at once; Ready ones while enough stay available.
        if !old.isEmpty {
            let minAvailable = max(0, replicas - strategy.maxUnavailable)
            var available = live.filter { $0.status.ready && !removing.contains($0.metadata.name) }.count
            var removedOld = 0
            for instance in old.sorted(by: { (!$0.status.ready && $1.status.ready) || ($0.status.ready == $1.status.ready && $0.metadata.name > $1.metadata.name) }) {
                if instance.status.ready {
                    guard available - 1 >= minAvailable else { break }
                    available -= 1
                }
                plan.operations.append(remove(instance))
                removedOld += 1
            }
            if removedOld > 0 { plan.events.append(("RollingUpdate", "replacing \(removedOld) old instance(s) with template \(hash)")) }
        }

        var status = workload.status
        status.conditions.remove(type: Self.validCondition)
        status.replicas = live.count - removing.count
        status.readyReplicas = live.filter { $0.status.ready && !removing.contains($0.metadata.name) }.count
        status.updatedReplicas = current.count - removing.count
        status.templateHash = hash
        status.observedGeneration = workload.metadata.generation
        if status != workload.status {
            var updated = workload
            updated.status = status
            plan.operations.append(.update(.workload(updated)))
        }
        return plan
    }

    /// The condition a workload carries while its stored spec is out of range.
    static let validCondition = "Valid"

    /// A graceful removal: instances on a node are marked; the others go at once.
    static func remove(_ instance: Instance) -> StoreOperation {
        if instance.spec.nodeName == nil || instance.status.phase == .succeeded || instance.status.phase == .failed && instance.status.pid == nil {
            return .delete(kind: "Instance", name: instance.metadata.name, revision: nil)
        }
        var marked = instance
        marked.metadata.deletionTimestamp = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
        return .update(.instance(marked))
    }

    static func makeInstance(_ workload: Workload, hash: String, ordinal: Int) -> Instance {
        let name = instanceName(workload: workload.metadata.name, hash: hash, ordinal: ordinal)
        var labels = workload.spec.template.labels
        labels[WellKnown.workloadLabel] = workload.metadata.name
        labels[WellKnown.templateHashLabel] = hash
        var instance = Instance(name: name, labels: labels, spec: InstanceSpec(template: workload.spec.template, restartPolicy: workload.spec.restartPolicy, restartBackoff: workload.spec.restartBackoff))
        instance.metadata.owner = "Workload/\(workload.metadata.name)"
        return instance
    }

    static func instanceName(workload: String, hash: String, ordinal: Int) -> String {
        let suffix = "-\(hash)-\(ordinal)"
        var prefix = String(workload.prefix(63 - suffix.count))
        while prefix.hasSuffix("-") { prefix.removeLast() }
        return prefix + suffix
    }

    static func ordinal(of name: String) -> Int? {
        name.split(separator: "-").last.flatMap { Int($0) }
    }
}
