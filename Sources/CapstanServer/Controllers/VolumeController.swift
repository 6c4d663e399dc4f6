import CapstanAPI
import CapstanCore
import CapstanStore
import Foundation
import ServiceLifecycle

/// The control-plane half of the volume lifecycle, like Kubernetes' persistent-volume
/// controller (the agents do the plugin calls, see `VolumeAttacher` and `StorageSync`):
/// - a claim's **phase** and conditions: `Pending` (why: waiting for its first instance, class
///   not found, its named volume taken), `Bound`, or `Lost` when its volume is gone; its
///   `status.capacity` is what the volume holds;
/// - a claim named in a Volume's `spec.volumeName` by a new claim (static binding) takes over a
///   `Released` or `Available` volume, never one another living claim holds;
/// - a claim's deletion **releases** its volume: `Retain` keeps it and its data (phase
///   `Released`), `Delete` marks it for deletion — its node's agent deletes the data through
///   the plugin, then the object;
/// - a claim's raised size becomes its volume's `spec.capacity`; the agent grows the volume
///   and reports `status.capacity`.
///
/// Event-driven on the shared informer: a batch with a claim, volume or class in it recomputes
/// every claim and volume (there are few); a periodic pass converges anything missed.
final class VolumeController: ServiceLifecycle.Service {
    let writer: StoreWriter
    let informer: SharedInformer
    let feed: SharedInformer.Feed
    private let recorder: EventRecorder
    static let resyncPeriod = Duration.seconds(30)

    init(writer: StoreWriter, informer: SharedInformer) {
        (self.writer, self.informer) = (writer, informer)
        feed = informer.feed(kinds: ["Volume", "VolumeClaim", "StorageClass", "Node", "VolumeSnapshot"])
        recorder = EventRecorder(writer: writer, source: "volume-controller")
    }

    func run() async throws {
        var lastFull = ContinuousClock.now
        var listed = false
        for await batch in feed.batches(every: Self.resyncPeriod) {
            var relevant = ContinuousClock.now - lastFull >= Self.resyncPeriod
            if relevant { listed = true }
            for delivery in batch {
                switch delivery {
                case .resync: relevant = true; listed = true
                case .event(let event):
                    switch event.object {
                    // Nodes: one that became ready may be the one an Immediate claim waits for
                    // (agents write their Node only on change; heartbeats go to leases).
                    case .volume, .volumeClaim, .storageClass, .node, .volumeSnapshot: relevant = true
                    default: break
                    }
                }
            }
            guard relevant, listed else { continue }
            lastFull = ContinuousClock.now
            let plan = informer.read { cache in
                Self.plan(claims: cache.all("VolumeClaim").compactMap { if case .volumeClaim(let c) = $0 { c } else { nil } },
                          volumes: cache.all("Volume").compactMap { if case .volume(let v) = $0 { v } else { nil } },
                          classes: Dictionary(cache.all("StorageClass").compactMap { if case .storageClass(let c) = $0 { (c.metadata.name, c) } else { nil } }, uniquingKeysWith: { a, _ in a }),
                          nodes: cache.all("Node").compactMap { if case .node(let n) = $0 { n } else { nil } },
                          snapshots: cache.all("VolumeSnapshot").compactMap { if case .volumeSnapshot(let s) = $0 { s } else { nil } })
            }
            for write in plan { await apply(write) }
        }
        try? await gracefulShutdown()
    }

    /// One write the controller wants, with the Event that explains it.
    struct Write: Equatable {
        var object: AnyResource
        var event: (reason: String, message: String, warning: Bool)?

        static func == (a: Write, b: Write) -> Bool { a.object == b.object && a.event?.reason == b.event?.reason }
    }

    /// What to write so every claim and volume says the truth. Pure: tested without a store.
    /// The annotation naming the node whose agent provisions an `Immediate` claim (like
    /// Kubernetes' `volume.kubernetes.io/selected-node`).
    static let selectedNode = "capstan.dev/selected-node"

    static func plan(claims: [VolumeClaim], volumes: [Volume], classes: [String: StorageClass], nodes: [Node] = [], snapshots: [VolumeSnapshot] = [], now: Double = Date().timeIntervalSince1970) -> [Write] {
        var writes: [Write] = []
        let claimsByName = Dictionary(claims.map { ($0.metadata.name, $0) }, uniquingKeysWith: { a, _ in a })
        var volumesByName = Dictionary(volumes.map { ($0.metadata.name, $0) }, uniquingKeysWith: { a, _ in a })
        let stamp = Timestamp(secondsSinceEpoch: now)
        let snapshotsByName = Dictionary(snapshots.map { ($0.metadata.name, $0) }, uniquingKeysWith: { a, _ in a })

        // Snapshots: the volume they copy and the node whose agent takes them.
        for snapshot in snapshots.sorted(by: { $0.metadata.name < $1.metadata.name }) where snapshot.metadata.deletionTimestamp == nil && snapshot.status.snapshotHandle == nil {
            var status = snapshot.status
            let source = claimsByName[snapshot.spec.source]
            let condition: Condition
            if let volumeName = source?.spec.volumeName, let volume = volumesByName[volumeName], volume.spec.claim == snapshot.spec.source, let node = volume.spec.controllerNode {
                status.volumeName = volumeName
                status.provisioner = volume.spec.provisioner
                status.nodeName = node
                condition = Condition(type: "Ready", status: false, reason: "Taking", message: "node \(node) takes it with storage plugin \(volume.spec.provisioner)", lastTransitionTime: stamp)
            } else {
                status.volumeName = nil
                status.provisioner = nil
                status.nodeName = nil
                condition = Condition(type: "Ready", status: false, reason: "SourceNotBound", message: source == nil ? "VolumeClaim \"\(snapshot.spec.source)\" does not exist" : "VolumeClaim \"\(snapshot.spec.source)\" has no volume yet (it is provisioned when its first instance starts)", lastTransitionTime: stamp)
            }
            // The agent's own verdict (SnapshotFailed, Unsupported) stands while the source is the same.
            let resolved = status.volumeName != snapshot.status.volumeName || status.nodeName != snapshot.status.nodeName
            if resolved || !snapshot.status.conditions.contains(where: { $0.type == "Ready" }) { status.conditions.set(condition) }
            if status != snapshot.status {
                var updated = snapshot
                updated.status = status
                writes.append(Write(object: .volumeSnapshot(updated), event: nil))
            }
        }

        // Volumes first: static bindings, releases and expansions change what claims see.
        for claim in claims.sorted(by: { $0.metadata.name < $1.metadata.name }) {
            guard let volumeName = claim.spec.volumeName, var volume = volumesByName[volumeName], volume.metadata.deletionTimestamp == nil else { continue }
            var changed = false
            // Held: its claim exists and is bound to it, or is still being bound (the agent makes
            // the Volume, then binds): only an unheld volume is taken over.
            let holder = volume.spec.claim.flatMap { claimsByName[$0] }
            let held = holder.map { $0.spec.volumeName == volumeName || $0.spec.volumeName == nil } ?? false
            if volume.spec.claim == nil || (volume.spec.claim != claim.metadata.name && !held) {
                // Unclaimed, or its claim is gone or moved on: this claim takes it over.
                volume.spec.claim = claim.metadata.name
                changed = true
            }
            if volume.spec.claim == claim.metadata.name, claim.spec.size.value > volume.spec.capacity.value, claim.metadata.deletionTimestamp == nil {
                volume.spec.capacity = claim.spec.size
                changed = true
            }
            if volume.spec.claim == claim.metadata.name, volume.status.phase != .bound {
                volume.status.phase = .bound
                changed = true
            }
            if changed {
                volumesByName[volumeName] = volume
                writes.append(Write(object: .volume(volume), event: nil))
            }
        }
        for volume in volumes.sorted(by: { $0.metadata.name < $1.metadata.name }) {
            guard var current = volumesByName[volume.metadata.name], current.metadata.deletionTimestamp == nil else { continue }
            let holder = current.spec.claim.flatMap { claimsByName[$0] }
            let held = holder?.spec.volumeName == current.metadata.name || (holder != nil && holder?.spec.volumeName == nil)
            var changed = false
            var event: (String, String, Bool)?
            if current.spec.claim == nil {
                if current.status.phase != .available { current.status.phase = .available; changed = true }
            } else if !held {
                if current.spec.effectiveReclaimPolicy == .delete && current.spec.controllerNode != nil {
                    // Its node's agent deletes the data, then the object.
                    current.metadata.deletionTimestamp = stamp
                    current.status.phase = .released
                    event = ("Releasing", "claim \(current.spec.claim!) is gone; reclaim policy Delete: node \(current.spec.controllerNode!) deletes the volume and its data", false)
                    changed = true
                } else if current.status.phase != .released && current.status.phase != .failed {
                    current.status.phase = .released
                    event = ("Released", "claim \(current.spec.claim!) is gone; reclaim policy \(current.spec.effectiveReclaimPolicy.rawValue): the volume and its data stay until deleted (a new claim may name it in spec.volumeName)", false)
                    changed = true
                }
            } else if current.status.phase != .bound {
                current.status.phase = .bound
                changed = true
            }
            if changed {
                volumesByName[current.metadata.name] = current
                writes.removeAll { if case .volume(let v) = $0.object { v.metadata.name == current.metadata.name } else { false } }
                writes.append(Write(object: .volume(current), event: event.map { (reason: $0.0, message: $0.1, warning: $0.2) }))
            }
        }

        for claim in claims.sorted(by: { $0.metadata.name < $1.metadata.name }) where claim.metadata.deletionTimestamp == nil {
            var status = claim.status
            var condition: Condition
            if let volumeName = claim.spec.volumeName {
                if let volume = volumesByName[volumeName] {
                    if volume.spec.claim == claim.metadata.name {
                        status.phase = .bound
                        status.capacity = volume.status.capacity ?? volume.spec.capacity
                        status.accessModes = volume.spec.effectiveAccessModes
                        condition = Condition(type: "Bound", status: true, reason: "Bound", message: "bound to volume \(volumeName)")
                    } else {
                        status.phase = .pending
                        condition = Condition(type: "Bound", status: false, reason: "VolumeBoundElsewhere", message: "volume \(volumeName) belongs to claim \(volume.spec.claim ?? "?"); name another volume, or leave spec.volumeName out to provision one")
                    }
                    if let resizing = volume.status.conditions.first(where: { $0.type == "Resized" }) {
                        status.conditions.set(Condition(type: "Resized", status: resizing.status, reason: resizing.reason, message: resizing.message, lastTransitionTime: resizing.lastTransitionTime))
                    }
                } else {
                    status.phase = .lost
                    status.capacity = nil
                    condition = Condition(type: "Bound", status: false, reason: "VolumeLost", message: "volume \(volumeName) no longer exists; its data is gone. Delete the claim and create it again for a new, empty volume")
                }
            } else {
                status.phase = .pending
                let restoring = claim.spec.dataSource.flatMap { snapshotsByName[$0.name] }
                let storageClass = claim.spec.storageClassName.flatMap { classes[$0] }
                    ?? (claim.spec.storageClassName == nil && claim.spec.provisioner == nil ? classes.values.filter { $0.spec.isDefault == true }.min { $0.metadata.name < $1.metadata.name } : nil)
                if let source = claim.spec.dataSource, restoring == nil {
                    condition = Condition(type: "Bound", status: false, reason: "SnapshotNotFound", message: "VolumeSnapshot \"\(source.name)\" (spec.dataSource) does not exist")
                } else if let source = claim.spec.dataSource, let snapshot = restoring, !snapshot.status.readyToUse {
                    condition = Condition(type: "Bound", status: false, reason: "SnapshotNotReady", message: "VolumeSnapshot \"\(source.name)\" is not ready yet; the claim is provisioned from it once it is")
                } else if let className = claim.spec.storageClassName, storageClass == nil {
                    condition = Condition(type: "Bound", status: false, reason: "ClassNotFound", message: "StorageClass \"\(className)\" does not exist; create it or name another (capstan get storageclasses)")
                } else if let storageClass, storageClass.spec.effectiveBindingMode == .immediate {
                    let eligible = Set(nodes.filter { node in node.status.ready && !node.spec.unschedulable && node.status.plugins.contains { $0.kind == "storage" && $0.name == storageClass.spec.provisioner } }.map(\.metadata.name))
                    if let node = claim.metadata.annotations[Self.selectedNode], eligible.contains(node) || restoring != nil {
                        condition = Condition(type: "Bound", status: false, reason: "Provisioning", message: "binding mode Immediate: node \(node) provisions it with \(storageClass.spec.provisioner)")
                    } else if let node = restoring?.status.nodeName ?? eligible.min() {
                        // A node that went away or lost the plugin is replaced by another.
                        // A restore happens where its snapshot lives.
                        // The node that provisions it; its agent sees the annotation.
                        var chosen = claim
                        chosen.metadata.annotations[Self.selectedNode] = node
                        writes.append(Write(object: .volumeClaim(chosen), event: ("Provisioning", "binding mode Immediate: node \(node) provisions it with storage plugin \(storageClass.spec.provisioner)", false)))
                        continue
                    } else {
                        condition = Condition(type: "Bound", status: false, reason: "NoNodeForProvisioner", message: "binding mode Immediate, but no ready node runs storage plugin \"\(storageClass.spec.provisioner)\"; load it on a node (capstan.yaml) or use WaitForFirstConsumer")
                    }
                } else {
                    condition = Condition(type: "Bound", status: false, reason: "WaitingForFirstConsumer", message: "provisioned on the node of the first instance that mounts it")
                }
            }
            let before = claim.status.conditions.first { $0.type == "Bound" }
            if before?.status != condition.status || before == nil { condition.lastTransitionTime = stamp } else { condition.lastTransitionTime = before?.lastTransitionTime }
            status.conditions.set(condition)
            if status != claim.status {
                var updated = claim
                updated.status = status
                let warn = condition.status == false && before?.reason != condition.reason && ["ClassNotFound", "VolumeLost", "VolumeBoundElsewhere", "NoNodeForProvisioner", "SnapshotNotFound"].contains(condition.reason)
                writes.append(Write(object: .volumeClaim(updated), event: warn ? (condition.reason, condition.message, true) : nil))
            }
        }
        return writes
    }

    private func apply(_ write: Write) async {
        let name = "\(write.object.kind)/\(write.object.name)"
        do {
            _ = try await writer.update(write.object)
            if let event = write.event { await recorder.record(name, reason: event.reason, message: event.message, type: event.warning ? .warning : .normal) }
        } catch StoreError.conflict {
            // Someone wrote first; the informer brings the change and the next batch redoes it.
        } catch StoreError.notFound {
        } catch {
            await recorder.record(name, reason: "VolumeControllerFailed", message: "could not write: \(error)", type: .warning)
        }
    }
}
