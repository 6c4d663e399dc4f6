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
    let feed: SharedInformer.Feed
    private let recorder: EventRecorder
    /// Told once the controller has listed the store.
    let readiness: ReadinessGate?

    init(writer: StoreWriter, informer: SharedInformer, readiness: ReadinessGate? = nil) {
        self.readiness = readiness
        self.writer = writer
        self.informer = informer
        self.feed = informer.feed(kinds: ["Workload", "Instance"])
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

    /// What the plan reads of an instance: a change to anything else (a binding, a pid, a
    /// restart count) does not wake the controller. With 10,000 instances being bound, that is
    /// 10,000 plans of 10,000 instances saved.
    struct Relevant: Equatable {
        var ready: Bool
        var terminating: Bool
        var hash: String?
        var owner: String?

        init(_ instance: Instance) {
            ready = instance.status.ready
            terminating = instance.metadata.deletionTimestamp != nil
            hash = instance.metadata.labels[WellKnown.templateHashLabel]
            owner = instance.metadata.owner
        }
    }

    func run() async throws {
        var seen: [String: Relevant] = [:]
        // Ends when the informer stops (graceful shutdown).
        for await batch in feed.batches(every: .seconds(30)) {
            var dirty = Set<String>()
            var everything = batch.isEmpty  // the periodic resync: everything, in case a write failed
            for delivery in batch {
                switch delivery {
                case .event(let event):
                    if case .instance(let instance) = event.object {
                        let name = instance.metadata.name
                        if event.change == .deleted {
                            seen[name] = nil
                        } else {
                            let now = Relevant(instance)
                            if seen[name] == now { continue }
                            seen[name] = now
                        }
                    }
                    if let name = Self.workload(of: event) { dirty.insert(name) }
                case .resync:
                    seen = [:]
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
            let (workload, members) = informer.read { cache in
                (cache.workload(name), cache.members(ownedBy: "Workload/\(name)"))
            }
            let plan = Self.plan(workload: workload, members: members) { member in
                informer.read { $0.instance(member.memberName) }.map(Self.remove)
            }
            operations += plan.operations
            events += plan.events.map { ("Workload/\(name)", $0.reason, $0.message) }
        }
        guard !operations.isEmpty || !events.isEmpty else { return }
        // One queue of writes (they fill whole transactions), the events alongside.
        let writes = operations
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = await self.writer.performAll(writes) }
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
        plan(workload: workload, members: owned, remove: { remove($0) })
    }

    /// The plan over what it reads of each instance (``PlanMember``): the controller passes
    /// small summaries read in place from the informer, not copies of every instance.
    /// - Parameter remove: the write that removes a member (nil when it is gone meanwhile).
    static func plan<Member: PlanMember>(workload: Workload?, members owned: [Member], remove: (Member) -> StoreOperation?) -> Plan {
        var plan = Plan()
        let live = owned.filter { !$0.isTerminating }
        guard let workload else {
            for instance in live { if let operation = remove(instance) { plan.operations.append(operation) } }
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
        let current = live.filter { $0.templateHash == hash }
        let old = live.filter { $0.templateHash != hash }
        let strategy = workload.spec.strategy
        var removing = Set<String>()

        // How many of the current template to add, within the surge budget during an update.
        var toCreate = max(0, replicas - current.count)
        if !old.isEmpty { toCreate = min(toCreate, max(0, replicas + strategy.maxSurge - live.count)) }
        let taken = Set(current.compactMap { ordinal(of: $0.memberName) })
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
            for instance in current.sorted(by: { (ordinal(of: $0.memberName) ?? 0) > (ordinal(of: $1.memberName) ?? 0) }).prefix(surplus) {
                if let operation = remove(instance) { plan.operations.append(operation) }
                removing.insert(instance.memberName)
            }
            plan.events.append(("ScalingDown", "removing \(surplus) instance(s)"))
        }

        // Old instances: the ones not Ready go at once; Ready ones while enough stay available.
        if !old.isEmpty {
            let minAvailable = max(0, replicas - strategy.maxUnavailable)
            var available = live.filter { $0.isReady && !removing.contains($0.memberName) }.count
            var removedOld = 0
            for instance in old.sorted(by: { (!$0.isReady && $1.isReady) || ($0.isReady == $1.isReady && $0.memberName > $1.memberName) }) {
                if instance.isReady {
                    guard available - 1 >= minAvailable else { break }
                    available -= 1
                }
                if let operation = remove(instance) { plan.operations.append(operation) }
                removedOld += 1
            }
            if removedOld > 0 { plan.events.append(("RollingUpdate", "replacing \(removedOld) old instance(s) with template \(hash)")) }
        }

        var status = workload.status
        status.conditions.remove(type: Self.validCondition)
        status.replicas = live.count - removing.count
        status.readyReplicas = live.filter { $0.isReady && !removing.contains($0.memberName) }.count
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

/// What the workload plan reads of an instance.
protocol PlanMember {
    var memberName: String { get }
    var templateHash: String? { get }
    var isReady: Bool { get }
    var isTerminating: Bool { get }
}

extension Instance: PlanMember {
    var memberName: String { metadata.name }
    var templateHash: String? { metadata.labels[WellKnown.templateHashLabel] }
    var isReady: Bool { status.ready }
    var isTerminating: Bool { metadata.deletionTimestamp != nil }
}

/// An instance as the plan sees it, read in place from the informer's cache.
struct OwnedMember: PlanMember {
    let memberName: String
    let templateHash: String?
    let isReady: Bool
    let isTerminating: Bool

    init(_ instance: Instance) {
        memberName = instance.metadata.name
        templateHash = instance.metadata.labels[WellKnown.templateHashLabel]
        isReady = instance.status.ready
        isTerminating = instance.metadata.deletionTimestamp != nil
    }
}

extension SharedInformer.Cache {
    /// The instances `owner` owns, as the workload plan reads them (kept by the informer's
    /// owner index).
    func members(ownedBy owner: String) -> [OwnedMember] {
        guard let members = instancesByOwner[owner] else { return [] }
        return Array(members.values)
    }
}
