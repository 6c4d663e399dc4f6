import CapstanAPI
import CapstanCore
import CapstanScheduling
import CapstanSDK
import CapstanStore
import Foundation
import PluginHost
import ServiceLifecycle
import Synchronization

/// Binds pending instances to nodes, like kube-scheduler's loop.
///
/// - Keeps a cache of nodes and of what bound instances request, fed by the store's changes.
/// - Each pass takes every pending instance, groups them by the profile their template names
///   (or the configured default), and places each with a ``SchedulingFramework`` built on the
///   cache. A binding is a store write (compare-and-swap on the instance's revision); the
///   writes of one pass go out together, so they share commits.
/// - An instance that fits nowhere gets a `FailedScheduling` event with the reasons and waits:
///   it is tried again only when the cluster changed (a node came, changed or freed capacity),
///   or after ``retryPeriod`` — never in a hot loop.
/// - Only nodes that are ready (the node lifecycle controller keeps that from their leases) and
///   not cordoned count.
final class SchedulerLoop: ServiceLifecycle.Service {
    let writer: StoreWriter
    let host: PluginHost
    let metrics: ServerMetrics
    let retryPeriod: Duration
    private let recorder: EventRecorder
    /// The request mix each profile's plugins were last told (``SchedulingFramework/observe(_:)``).
    private let observedWorkloads = Mutex<[String: WorkloadDistribution]>([:])
    private var observedWorkload: [String: WorkloadDistribution] {
        get { observedWorkloads.withLock { $0 } }
        set { observedWorkloads.withLock { $0 = newValue } }
    }
    /// Told once the loop has listed the store.
    let readiness: ReadinessGate?

    let informer: SharedInformer
    let feed: SharedInformer.Feed

    init(writer: StoreWriter, informer: SharedInformer, host: PluginHost, metrics: ServerMetrics, retryPeriod: Duration = .seconds(30), readiness: ReadinessGate? = nil) {
        self.readiness = readiness
        self.writer = writer
        self.informer = informer
        self.feed = informer.feed(kinds: Set(Self.watchedKinds))
        self.host = host
        self.metrics = metrics
        self.retryPeriod = retryPeriod
        self.recorder = EventRecorder(writer: writer, source: "scheduler")
    }

    /// What the loop knows of the cluster.
    struct Cache {
        var nodes: [String: Node] = [:] {
            didSet { orderedNodes = nil }
        }
        /// The schedulable nodes' snapshots, by name, without what is bound to them: built when a
        /// node changes (parsing its quantities), not on every pass.
        private var orderedNodes: [NodeSnapshot]?
        /// Instance → its node, requests and host ports, for bound instances that still hold
        /// resources.
        var bound: [String: (node: String, requests: ResourceVector, ports: [String], gpus: [Int: Int32])] = [:]
        /// Requests per node, summed over `bound`.
        var requested: [String: ResourceVector] = [:]
        /// Host ports taken per node (`8080/tcp` → how many bound instances hold it).
        var hostPorts: [String: [String: Int]] = [:]
        /// Thousandths of each GPU taken per node (GPU index → milli), from the device
        /// assignments bound instances carry: a GPU shared in one pass stays shared in the next.
        var gpuUsed: [String: [Int: Int32]] = [:]
        var pending: [String: Instance] = [:]
        /// VolumeClaim → the node its node-local volume lives on: instances mounting it go there.
        var claimNodes: [String: String] = [:]
        /// VolumeClaim → the snapshot it restores, and snapshot → its node: an unbound claim that
        /// restores a node-local snapshot is provisioned on that node.
        var claimSnapshots: [String: String] = [:]
        var snapshotNodes: [String: String] = [:]
        /// Claims that have a Volume (provisioned): one without is placed with its first users.
        var provisionedClaims: Set<String> = []
        /// VolumeClaim → its access modes.
        var claimModes: [String: [VolumeAccessMode]] = [:]
        /// VolumeClaim → the bound instances that mount it, and their nodes.
        var claimUsers: [String: [String: String]] = [:]
        /// Bumped whenever capacity may have appeared: a node added or changed, an instance gone.
        var generation = 0
        /// Unschedulable instance → the generation it failed at, and when.
        var failed: [String: (generation: Int, at: ContinuousClock.Instant)] = [:]

        mutating func apply(_ event: ResourceEvent) {
            switch event.object {
            case .node(let node):
                if event.change == .deleted {
                    nodes[node.metadata.name] = nil
                } else {
                    let before = nodes[node.metadata.name]
                    nodes[node.metadata.name] = node
                    // A heartbeat alone changes no capacity; do not wake unschedulables for it.
                    if before?.status.allocatable != node.status.allocatable || before?.status.ready != node.status.ready || before?.spec != node.spec {
                        generation += 1
                    }
                }
            case .instance(let instance):
                let name = instance.metadata.name
                let holdsResources = event.change != .deleted && instance.spec.nodeName != nil
                    && instance.status.phase != .succeeded && instance.status.phase != .failed
                if let nodeName = instance.spec.nodeName, holdsResources {
                    if bound[name] == nil {
                        let requests = instance.spec.template.resources.requests.vector
                        let ports = Self.hostPorts(of: instance)
                        let gpus = Self.gpuShares(of: instance)
                        bound[name] = (nodeName, requests, ports, gpus)
                        requested[nodeName, default: ResourceVector()] += requests
                        for port in ports { hostPorts[nodeName, default: [:]][port, default: 0] += 1 }
                        for (gpu, milli) in gpus { gpuUsed[nodeName, default: [:]][gpu, default: 0] += milli }
                        for mount in instance.spec.template.volumeMounts { claimUsers[mount.claim, default: [:]][name] = nodeName }
                    }
                } else if let previous = bound.removeValue(forKey: name) {
                    for mount in instance.spec.template.volumeMounts {
                        claimUsers[mount.claim]?[name] = nil
                        if claimUsers[mount.claim]?.isEmpty == true { claimUsers[mount.claim] = nil }
                    }
                    requested[previous.node, default: ResourceVector()] -= previous.requests
                    for port in previous.ports {
                        hostPorts[previous.node]?[port, default: 1] -= 1
                        if hostPorts[previous.node]?[port] == 0 { hostPorts[previous.node]?[port] = nil }
                    }
                    for (gpu, milli) in previous.gpus {
                        gpuUsed[previous.node]?[gpu, default: milli] -= milli
                        if (gpuUsed[previous.node]?[gpu] ?? 0) <= 0 { gpuUsed[previous.node]?[gpu] = nil }
                    }
                    generation += 1
                }
                if event.change != .deleted, instance.spec.nodeName == nil, instance.metadata.deletionTimestamp == nil {
                    pending[name] = instance
                } else {
                    pending[name] = nil
                    failed[name] = nil
                }
            case .volume(let volume):
                guard let claim = volume.spec.claim else { break }
                if event.change == .deleted || volume.spec.nodeName == nil {
                    claimNodes[claim] = nil
                } else {
                    claimNodes[claim] = volume.spec.nodeName
                }
                if event.change == .deleted { provisionedClaims.remove(claim) } else { provisionedClaims.insert(claim) }
                generation += 1
            case .volumeClaim(let claim):
                claimModes[claim.metadata.name] = event.change == .deleted ? nil : claim.spec.effectiveAccessModes
                claimSnapshots[claim.metadata.name] = event.change == .deleted ? nil : claim.spec.dataSource?.name
            case .volumeSnapshot(let snapshot):
                snapshotNodes[snapshot.metadata.name] = event.change == .deleted ? nil : snapshot.status.nodeName
                generation += 1
            default:
                break
            }
        }

        /// GPU index → thousandths taken, from a bound instance's device assignment.
        static func gpuShares(of instance: Instance) -> [Int: Int32] {
            let share = instance.spec.template.resources.requests.vector.extended[ResourceName.gpuMilli] ?? 0
            let take = Int32(clamping: share > 0 ? min(share, 1000) : 1000)
            var shares: [Int: Int32] = [:]
            for device in instance.spec.gpuDevices { shares[device, default: 0] += take }
            return shares
        }

        /// The host ports an instance asks for, as `port/protocol` (0 lets the network plugin
        /// pick one, so it is no constraint).
        static func hostPorts(of instance: Instance) -> [String] {
            instance.spec.template.ports.compactMap { port in
                guard let host = port.hostPort, host > 0 else { return nil }
                return "\(host)/\((port.protocol ?? "tcp").lowercased())"
            }
        }

        /// Why `node` cannot take `instance`, for the host's own constraints: the node of its
        /// node-local volumes, and host ports already taken there. Nil when it can.
        func constraint(for instance: Instance, pinned: String?) -> SchedulingFramework.NodeConstraint? {
            let ports = Self.hostPorts(of: instance)
            guard pinned != nil || !ports.isEmpty else { return nil }
            let taken = hostPorts
            return { node in
                if let pinned, node.name != pinned { return "its volumes live on node \(pinned)" }
                for port in ports where (taken[node.name]?[port] ?? 0) > 0 { return "host port \(port) is taken" }
                return nil
            }
        }

        /// The request mix of every instance the loop knows (bound and pending), by shape.
        func workload() -> WorkloadDistribution {
            var counts: [ResourceVector: Double] = [:]
            for entry in bound.values { counts[entry.requests, default: 0] += 1 }
            for instance in pending.values { counts[instance.spec.template.resources.requests.vector, default: 0] += 1 }
            return WorkloadDistribution(shapes: counts.sorted { "\($0.key)" < "\($1.key)" }.map { .init(requests: $0.key, weight: $0.value) })
        }

        enum Pin {
            case anywhere
            case node(String)
            case impossible(Unschedulable)
        }

        /// The one node an instance's volumes allow, or why none can hold them all: node-local
        /// volumes pin to their node; a `ReadWriteOnce` volume that can move (shared storage)
        /// to the node already using it; a `ReadWriteOncePod` volume admits one instance.
        func pin(_ instance: Instance) -> Pin {
            var nodes = Set(instance.spec.template.volumeMounts.compactMap { claimNodes[$0.claim] ?? claimSnapshots[$0.claim].flatMap { snapshotNodes[$0] } })
            for mount in instance.spec.template.volumeMounts {
                let modes = claimModes[mount.claim] ?? []
                let others = (claimUsers[mount.claim] ?? [:]).filter { $0.key != instance.metadata.name }
                if modes.contains(.readWriteOncePod), let other = others.keys.sorted().first {
                    return .impossible(Unschedulable(nodesEvaluated: 0, totalNodes: self.nodes.count, reasons: ["claim \(mount.claim) is ReadWriteOncePod and instance \(other) uses it": 1]))
                }
                if !provisionedClaims.contains(mount.claim) && claimNodes[mount.claim] == nil {
                    // Not provisioned yet: it will be, on the node of its first instance (node-local
                    // storage), so the instances placed meanwhile — in this pass too — go there.
                    nodes.formUnion(others.values)
                } else if modes == [.readWriteOnce] || modes == [.readWriteOnce, .readWriteOncePod] {
                    nodes.formUnion(others.values)
                }
            }
            if nodes.count > 1 {
                return .impossible(Unschedulable(nodesEvaluated: 0, totalNodes: self.nodes.count, reasons: ["its volume claims live on different nodes (\(nodes.sorted().joined(separator: ", ")))": 1]))
            }
            return nodes.first.map(Pin.node) ?? .anywhere
        }

        mutating func snapshots() -> [NodeSnapshot] {
            // `ready` is kept by the node lifecycle controller from the node's lease.
            // Names are sorted, not the nodes: moving 5,000 whole Node values around in a sort
            // cost more than the rest of building the snapshots.
            let ordered = orderedNodes ?? nodes.keys.sorted().compactMap { name -> NodeSnapshot? in
                guard let node = nodes[name], node.status.ready, !node.spec.unschedulable else { return nil }
                return NodeSnapshot(node: node)
            }
            orderedNodes = ordered
            var snapshots: [NodeSnapshot] = []
            snapshots.reserveCapacity(ordered.count)
            for base in ordered {
                var snapshot = base
                snapshot.index = snapshots.count
                snapshot.requested = requested[base.name] ?? ResourceVector()
                // Each GPU starts with what bound instances' assignments left of it.
                for (gpu, milli) in gpuUsed[base.name] ?? [:] where snapshot.gpus.indices.contains(gpu) {
                    snapshot.gpus[gpu].freeMilli = max(0, snapshot.gpus[gpu].freeMilli - milli)
                }
                snapshots.append(snapshot)
            }
            return snapshots
        }
    }

    /// `CAPSTAN_TRACE_SCHEDULER=1`: one line per pass on stderr (sizes and times), for benchmarks.
    static let trace = ProcessInfo.processInfo.environment["CAPSTAN_TRACE_SCHEDULER"] == "1"

    /// The kinds the cache is built from.
    static let watchedKinds = ["Node", "Instance", "Volume", "VolumeClaim", "VolumeSnapshot"]

    func run() async throws {
        // The loop's own accounting (requests per node, host ports, GPU shares, pending), kept
        // from the shared informer's changes; rebuilt from its cache on a resync.
        var cache = Cache()
        var listed = false
        var passes = PassesInFlight()
        await withDiscardingTaskGroup { group in
            // Ends when the informer stops (graceful shutdown).
            for await batch in feed.batches(every: .seconds(5)) {
                for delivery in batch {
                    switch delivery {
                    case .event(let event):
                        cache.apply(event)
                    case .resync:
                        let failed = cache.failed
                        cache = Cache()
                        for event in informer.read({ $0.events(of: Self.watchedKinds) }) { cache.apply(event) }
                        cache.failed = failed.filter { cache.pending[$0.key] != nil }
                        if !listed {
                            listed = true
                            readiness?.ready("scheduler")
                        }
                    }
                }
                // Bindings written since (their events are in this batch): release what the
                // store refused, here on the loop, which alone calls the plugins.
                settle(&passes)
                guard listed else { continue }
                pass(&cache, &passes, &group)
            }
        }
        settle(&passes)
        // Stay until this service's own turn to stop, so the group never sees it end early.
        try? await gracefulShutdown()
    }

    /// Passes whose bindings are still being written: the framework each placed with (to
    /// release a refused binding's placement through it: the reserve contract), by pass.
    struct PassesInFlight {
        var next = 0
        var frameworks: [Int: (bindings: [(Placement, SchedulingFramework)], chunksLeft: Int)] = [:]
    }

    /// Binding chunks the store has answered: (pass, positions of refused bindings in it).
    private let answered = Mutex<[(pass: Int, refused: [Int])]>([])

    /// Releases the placements whose binding the store refused, and forgets finished passes.
    private func settle(_ passes: inout PassesInFlight) {
        let done = answered.withLock { answered in
            defer { answered.removeAll() }
            return answered
        }
        for (pass, refused) in done {
            guard var entry = passes.frameworks[pass] else { continue }
            for position in refused {
                let (placement, framework) = entry.bindings[position]
                framework.release(placement)
            }
            entry.chunksLeft -= 1
            passes.frameworks[pass] = entry.chunksLeft > 0 ? entry : nil
        }
    }

    /// Places every pending instance that is due, and queues the bindings to the store without
    /// waiting for them: the cache counts a placement at once, so the next pass (on the next
    /// batch of changes: more instances created meanwhile) places around it while the store
    /// writes. A refused binding (the instance changed meanwhile) is released by ``settle(_:)``;
    /// the change that made the store refuse it comes back through the feed.
    func pass(_ cache: inout Cache, _ passes: inout PassesInFlight, _ group: inout DiscardingTaskGroup) {
        let clock = ContinuousClock()
        let now = clock.now
        // Oldest first (then by name), sorting small keys rather than whole instances.
        let dueKeys = cache.pending.values.compactMap { instance -> (Timestamp, String)? in
            if let failure = cache.failed[instance.metadata.name], failure.generation >= cache.generation, now - failure.at < retryPeriod { return nil }
            return (instance.metadata.creationTimestamp ?? Timestamp(secondsSinceEpoch: 0), instance.metadata.name)
        }.sorted { $0 < $1 }
        let due = dueKeys.compactMap { cache.pending[$0.1] }
        guard !due.isEmpty else { return }
        var byProfile: [String?: [Instance]] = [:]
        for instance in due { byProfile[instance.spec.template.scheduler, default: []].append(instance) }

        let passNumber = passes.next
        passes.next &+= 1
        var bindings: [(Placement, SchedulingFramework)] = []
        var chunks = 0
        var pendingWrites: [StoreOperation] = []
        var failures: [(Instance, String)] = []
        let workload = cache.workload()
        let (writer, metrics) = (self.writer, self.metrics)
        // Every `bindingChunk` placements go to the store as one group of writes (whole
        // transactions), while the pass goes on placing.
        func flush() {
            guard !pendingWrites.isEmpty else { return }
            let (writes, first) = (pendingWrites, bindings.count - pendingWrites.count)
            pendingWrites.removeAll(keepingCapacity: true)
            chunks += 1
            group.addTask {
                let results = await writer.performAll(writes)
                let refused = results.indices.filter { if case .failure = results[$0] { true } else { false } }
                metrics.recordBindings(bound: results.count - refused.count, failed: refused.count)
                self.answered.withLock { $0.append((passNumber, refused.map { $0 + first })) }
            }
        }
        for (profileName, instances) in byProfile.sorted(by: { ($0.key ?? "") < ($1.key ?? "") }) {
            guard let profile = host.schedulingProfile(named: profileName) else {
                let wanted = profileName ?? host.defaultScheduler ?? "(default)"
                for instance in instances { failures.append((instance, "no scheduler profile or plugin named \"\(wanted)\" is loaded on the server; see `capstan plugins list`")) }
                continue
            }
            let framework = SchedulingFramework(profile: profile, nodes: cache.snapshots())
            // Plugins that plan ahead (fgd) learn the request mix, when it changed.
            if observedWorkload[profile.name] != workload {
                framework.observe(workload)
                observedWorkload[profile.name] = workload
            }
            for instance in instances {
                let started = clock.now
                let unit = SchedulingUnit(name: instance.metadata.name, template: instance.spec.template)
                let decision: SchedulingDecision
                switch cache.pin(instance) {
                case .impossible(let why):
                    decision = .unschedulable(why)
                case .node(let pinned):
                    // Node-local volumes: only their node is a candidate, in the pass's one
                    // framework, so what it books counts for every other instance of the pass.
                    decision = framework.schedule(unit, constraint: cache.constraint(for: instance, pinned: pinned))
                case .anywhere:
                    decision = framework.schedule(unit, constraint: cache.constraint(for: instance, pinned: nil))
                }
                metrics.recordDecision(profile: profile.name, placed: decision.placement != nil, duration: clock.now - started)
                switch decision {
                case .placed(let placement):
                    let placed = bound(instance, to: placement)
                    bindings.append((placement, framework))
                    pendingWrites.append(.update(.instance(placed)))
                    // Count it at once: the rest of this pass and the next ones see it.
                    cache.apply(ResourceEvent(.modified, .instance(placed)))
                    if pendingWrites.count >= Self.bindingChunk { flush() }
                case .unschedulable(let why):
                    failures.append((instance, why.description))
                }
            }
            metrics.add(framework.metrics)
        }
        flush()
        if chunks > 0 { passes.frameworks[passNumber] = (bindings, chunks) }
        for (instance, _) in failures { cache.failed[instance.metadata.name] = (cache.generation, now) }
        for (instance, reason) in failures {
            group.addTask { await self.markUnschedulable(instance, reason: reason) }
        }
        if Self.trace { FileHandle.standardError.write(Data("pass \(passNumber): \(due.count) due, \(bindings.count) placed in \(clock.now - now), bindings queued in \(chunks) group(s)\n".utf8)) }
    }

    /// Placements queued to the store as one group of writes while the pass goes on.
    static let bindingChunk = 512

    private func bound(_ instance: Instance, to placement: Placement) -> Instance {
        var bound = instance
        bound.spec.nodeName = placement.nodeName
        bound.spec.gpuDevices = placement.gpus
        bound.status.phase = .scheduled
        bound.status.reason = nil
        bound.status.message = nil
        return bound
    }

    private func markUnschedulable(_ instance: Instance, reason: String) async {
        await recorder.record("Instance/\(instance.metadata.name)", reason: "FailedScheduling", message: reason, type: .warning)
        guard instance.status.reason != "Unschedulable" || instance.status.message != reason else { return }
        var marked = instance
        marked.status.reason = "Unschedulable"
        marked.status.message = reason
        _ = try? await writer.update(.instance(marked))
    }
}
