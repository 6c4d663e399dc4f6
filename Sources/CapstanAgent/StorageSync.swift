import CapstanAPI
import CapstanCore
import CapstanSDK
import Foundation
import Logging
import PluginHost

/// The agent's share of the volume lifecycle for the volumes it provisioned (`controllerNode`):
/// - **reclaim**: a Volume marked for deletion (its claim went under reclaim policy `Delete`,
///   or an operator deleted it) has its data deleted through its plugin, then the object goes;
/// - **expansion**: a Volume whose `spec.capacity` (raised by the control plane from its claim)
///   is above what the plugin reported grows through `expandVolume`; `status.capacity` says
///   the new size, the `Resized` condition says why not.
///
/// A plugin's error goes to the Volume's status (phase `Failed` or condition `Resized` false)
/// and an Event on the Volume and its claim, and is retried at the next resync; one volume's
/// failure never holds up another.
struct StorageSync: Sendable {
    let api: APIClient
    let plugins: PluginHost
    let nodeName: String
    let events: EventRecorder
    let logger: Logger
    let usage: VolumeUsage
    /// Provisions `Immediate` claims the control plane gave this node.
    let attacher: VolumeAttacher
    static let resyncPeriod = Duration.seconds(30)
    /// The `Resized` reason while a grown volume waits for its next stage to grow its file
    /// system (the plugin cannot do it under a running instance).
    static let fileSystemResizePending = "FileSystemResizePending"

    func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await follow(.volume, query: ["nodeName": nodeName]) { object in
                if case .volume(let volume) = object { await reconcile(volume) }
            } }
            group.addTask { await follow(.volumeClaim, query: [:]) { object in
                if case .volumeClaim(let claim) = object { await provisionIfSelected(claim) }
            } }
            group.addTask { await follow(.volumeSnapshot, query: [:]) { object in
                if case .volumeSnapshot(let snapshot) = object { await reconcile(snapshot) }
            } }
            // A volume whose last user here went may now be deleted (a reclaim that waited).
            group.addTask {
                for await name in usage.released {
                    if case .volume(let volume)? = try? await api.fetch(kind: "Volume", name: name) { await reconcile(volume) }
                }
            }
        }
    }

    /// Takes a snapshot the volume controller gave this node, or deletes one marked for it.
    func reconcile(_ snapshot: VolumeSnapshot) async {
        guard snapshot.status.nodeName == nodeName else { return }
        let name = snapshot.metadata.name
        if snapshot.metadata.deletionTimestamp != nil {
            do {
                if let handle = snapshot.status.snapshotHandle, let provisioner = snapshot.status.provisioner {
                    guard let storage = plugins.registry.storage(named: provisioner) else {
                        throw PluginError(.failedPrecondition, "storage plugin \"\(provisioner)\" is not loaded on node \(nodeName)")
                    }
                    try await storage.deleteSnapshot(DeleteSnapshotRequest(snapshotID: handle))
                }
                _ = try await api.delete(.volumeSnapshot, name, force: true)
            } catch let error as APIError where error.status == 404 {
            } catch {
                await failed(snapshot, reason: "DeleteFailed", message: "node \(nodeName) could not delete the snapshot (retried every \(Self.resyncPeriod.components.seconds) s): \(error)")
            }
            return
        }
        guard !snapshot.status.readyToUse, snapshot.status.snapshotHandle == nil, let volumeName = snapshot.status.volumeName else { return }
        do {
            guard case .volume(let volume)? = try await api.fetch(kind: "Volume", name: volumeName) else {
                throw PluginError(.notFound, "Volume \"\(volumeName)\" of claim \(snapshot.spec.source) is gone")
            }
            guard let storage = plugins.registry.storage(named: volume.spec.provisioner) else {
                throw PluginError(.failedPrecondition, "storage plugin \"\(volume.spec.provisioner)\" is not loaded on node \(nodeName)")
            }
            guard storage.capabilities.snapshots else {
                throw PluginError(.unimplemented, "storage plugin \(volume.spec.provisioner) does not take snapshots")
            }
            let uid = snapshot.metadata.uid.map { String($0.prefix(8)).lowercased() } ?? String(UUID().uuidString.prefix(8)).lowercased()
            let info = try await storage.createSnapshot(CreateSnapshotRequest(name: "\(name.prefix(50))-\(uid)", sourceVolumeID: volume.spec.volumeHandle))
            var taken = snapshot
            let now = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
            taken.status.readyToUse = true
            taken.status.snapshotHandle = info.snapshotID
            taken.status.restoreSize = VolumeSize.quantity(bytes: info.sizeBytes)
            taken.status.creationTime = now
            taken.status.conditions.set(Condition(type: "Ready", status: true, reason: "Taken", message: "storage plugin \(volume.spec.provisioner) took it on node \(nodeName)", lastTransitionTime: now))
            _ = try await api.updateStatus(.volumeSnapshot(taken))
            await events.record("VolumeSnapshot/\(name)", reason: "Taken", message: "storage plugin \(volume.spec.provisioner) copied volume \(volumeName)", type: .normal)
        } catch {
            let unsupported = (error as? PluginError)?.code == .unimplemented
            await failed(snapshot, reason: unsupported ? "Unsupported" : "SnapshotFailed", message: "\(error)")
        }
    }

    private func failed(_ snapshot: VolumeSnapshot, reason: String, message: String) async {
        var updated = snapshot
        guard updated.status.conditions.set(Condition(type: "Ready", status: false, reason: reason, message: message, lastTransitionTime: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970))) else { return }
        _ = try? await api.updateStatus(.volumeSnapshot(updated))
        await events.record("VolumeSnapshot/\(snapshot.metadata.name)", reason: reason, message: message, type: .warning)
    }

    private func provisionIfSelected(_ claim: VolumeClaim) async {
        guard claim.spec.volumeName == nil, claim.metadata.deletionTimestamp == nil,
              claim.metadata.annotations["capstan.dev/selected-node"] == nodeName else { return }
        await attacher.provision(claimName: claim.metadata.name)
    }

    /// List, handle each, watch; relist at the resync period (failed calls are retried then).
    private func follow(_ kind: ResourceKind, query: [String: String], handle: @escaping @Sendable (AnyResource) async -> Void) async {
        var backoff = Reconnect()
        while !Task.isCancelled {
            do {
                let list = try await api.list(kind, query: query)
                for object in list.items { await handle(object) }
                let stream = try await api.watch(kind, after: list.revision, query: query)
                backoff.reset()
                // The watch ends at the resync period: failed calls are retried by the relist.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await event in stream {
                            guard event.type != .deleted, let object = event.object else {
                                if event.type == .resync { return }
                                continue
                            }
                            await handle(object)
                        }
                    }
                    group.addTask { try await Task.sleep(for: Self.resyncPeriod) }
                    try await group.next()
                    group.cancelAll()
                }
                continue
            } catch {
                if Task.isCancelled { return }
                logger.warning("\(kind.kind) watch broke (\(error)); listing again")
            }
            guard await backoff.pause() else { return }
        }
    }

    func reconcile(_ volume: Volume) async {
        guard volume.spec.controllerNode == nodeName else { return }
        if volume.metadata.deletionTimestamp != nil {
            // Still mounted for an instance here: it is deleted once that instance stops.
            guard await !usage.inUse(volume.metadata.name) else { return }
            await reclaim(volume)
        } else if let reported = volume.status.capacity {
            if volume.spec.capacity.value > reported.value { await expand(volume) }
        } else {
            await learnCapacity(volume)
        }
    }

    private func reclaim(_ volume: Volume) async {
        let name = volume.metadata.name
        do {
            guard let storage = plugins.registry.storage(named: volume.spec.provisioner) else {
                throw PluginError(.failedPrecondition, "storage plugin \"\(volume.spec.provisioner)\" is not loaded on node \(nodeName)")
            }
            try await storage.deleteVolume(DeleteVolumeRequest(volumeID: volume.spec.volumeHandle))
            _ = try await api.delete(.volume, name, force: true)
            logger.info("deleted volume \(name) and its data (reclaim policy Delete)")
            await events.record("Volume/\(name)", reason: "Reclaimed", message: "storage plugin \(volume.spec.provisioner) deleted the volume and its data", type: .normal)
        } catch let error as APIError where error.status == 404 {
        } catch {
            var failed = volume
            failed.status.phase = .failed
            let condition = Condition(type: "Reclaimed", status: false, reason: "DeleteFailed",
                                      message: "node \(nodeName) could not delete the data (retried every \(Self.resyncPeriod.components.seconds) s): \(error)",
                                      lastTransitionTime: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970))
            if failed.status.conditions.set(condition) || volume.status.phase != .failed {
                _ = try? await api.updateStatus(.volume(failed))
                await events.record("Volume/\(name)", reason: "ReclaimFailed", message: condition.message, type: .warning)
            }
        }
    }

    /// A volume an operator made (no size reported yet): what the plugin says it holds, so a
    /// later expansion has something to compare with.
    private func learnCapacity(_ volume: Volume) async {
        guard let storage = plugins.registry.storage(named: volume.spec.provisioner) else { return }
        let found: VolumeInfo
        do {
            guard let listed = try await storage.listVolumes().first(where: { $0.volumeID == volume.spec.volumeHandle }) else {
                throw PluginError(.notFound, "storage plugin \(volume.spec.provisioner) does not list handle \(volume.spec.volumeHandle)")
            }
            found = listed
        } catch {
            var failed = volume
            if failed.status.conditions.set(Condition(type: "Resized", status: false, reason: "SizeUnknown", message: "node \(nodeName) cannot learn the volume's size: \(error)",
                                                      lastTransitionTime: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970))) {
                _ = try? await api.updateStatus(.volume(failed))
                await events.record("Volume/\(volume.metadata.name)", reason: "SizeUnknown", message: "node \(nodeName) cannot learn the volume's size: \(error)", type: .warning)
            }
            return
        }
        var updated = volume
        updated.status.capacity = VolumeSize.quantity(bytes: found.sizeBytes)
        _ = try? await api.updateStatus(.volume(updated))
    }

    private func expand(_ volume: Volume) async {
        let name = volume.metadata.name
        var updated = volume
        let now = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
        do {
            guard let storage = plugins.registry.storage(named: volume.spec.provisioner) else {
                throw PluginError(.failedPrecondition, "storage plugin \"\(volume.spec.provisioner)\" is not loaded on node \(nodeName)")
            }
            guard storage.capabilities.expansion else {
                throw PluginError(.unimplemented, "storage plugin \"\(volume.spec.provisioner)\" does not expand volumes")
            }
            let inUse = await usage.inUse(name)
            let info = try await storage.expandVolume(ExpandVolumeRequest(volumeID: volume.spec.volumeHandle, sizeBytes: volume.spec.capacity.value))
            updated.status.capacity = VolumeSize.quantity(bytes: info.sizeBytes)
            let condition: Condition
            if inUse && storage.capabilities.stageUnstage && !storage.capabilities.onlineExpansion {
                condition = Condition(type: "Resized", status: false, reason: Self.fileSystemResizePending,
                                      message: "the volume grew to \(volume.spec.capacity); its file system grows when it is next staged, once no instance on node \(nodeName) uses it (storage plugin \(volume.spec.provisioner) cannot grow it online here)", lastTransitionTime: now)
            } else {
                condition = Condition(type: "Resized", status: true, reason: "Resized", message: "grew to \(volume.spec.capacity)", lastTransitionTime: now)
            }
            updated.status.conditions.set(condition)
            _ = try await api.updateStatus(.volume(updated))
            await events.record("Volume/\(name)", reason: condition.reason, message: condition.message, type: .normal)
        } catch {
            let condition = Condition(type: "Resized", status: false, reason: "ExpansionFailed", message: "could not grow to \(volume.spec.capacity): \(error)", lastTransitionTime: now)
            if updated.status.conditions.set(condition) {
                _ = try? await api.updateStatus(.volume(updated))
                await events.record("Volume/\(name)", reason: "ExpansionFailed", message: condition.message, type: .warning)
                if let claim = volume.spec.claim {
                    await events.record("VolumeClaim/\(claim)", reason: "ExpansionFailed", message: condition.message, type: .warning)
                }
            }
        }
    }
}
