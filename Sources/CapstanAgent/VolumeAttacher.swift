import CapstanAPI
import CapstanCore
import CapstanSDK
import Foundation
import PluginHost
import CapstanSupervision

/// Makes an instance's claimed volumes available on this node through the storage plugins, like
/// the kubelet's volume manager with a CSI driver:
/// - an unbound VolumeClaim is provisioned on first use, here (`createVolume` with this node and
///   the claim's StorageClass parameters); a Volume object records it (class, reclaim policy,
///   access modes) and the claim is bound to it (compare-and-swap, so two agents racing for one
///   claim end with one volume);
/// - the node **stages** a volume once (`stageVolume` at `<state>/staging/<volume>`, when the
///   plugin stages) and **publishes** it per instance at `<state>/volumes/<instance>/<claim>`,
///   which the runtime bind-mounts; the last unpublish on the node unstages it;
/// - access modes are enforced here too: a `ReadWriteOncePod` volume is published to one
///   instance of the node at a time, a `ReadOnlyMany` claim is always published read-only;
/// - the data stays with the volume: a restarted, replaced or rescheduled instance that claims it
///   again finds it (the scheduler pins instances to the node of their node-local volumes).
struct VolumeAttacher: Sendable {
    let api: APIClient
    let plugins: PluginHost
    let nodeName: String
    let directory: URL
    let usage: VolumeUsage
    let events: EventRecorder

    struct Published: Sendable {
        var provisioner: String
        var volumeName: String
        var volumeID: String
        var path: String
    }

    /// Publishes every claim the template mounts; returns the runtime mounts and what was
    /// published (to unpublish later). On failure, what this call published is undone.
    func publish(_ template: InstanceTemplate, for instance: String) async throws -> (mounts: [RuntimeMount], published: [Published]) {
        var mounts: [RuntimeMount] = []
        var published: [Published] = []
        var seen: [String: Int] = [:]
        do {
            for mount in template.volumeMounts {
                let (provisioner, volume, claim) = try await volume(for: mount.claim)
                guard let storage = plugins.registry.storage(named: provisioner) else {
                    throw PluginError(.failedPrecondition, "storage plugin \"\(provisioner)\" of volume \(volume.metadata.name) is not loaded on node \(nodeName)")
                }
                let modes = Set(claim.spec.effectiveAccessModes)
                // A claim that may only read is published read-only, whatever the mount says.
                let readOnly = (mount.readOnly ?? false) || modes == [.readOnlyMany]
                // One target per mount: a claim mounted twice (read-write and read-only) gets two
                // (`<claim>`, then `<claim>.1` …; claim names have no dots).
                let occurrence = seen[mount.claim, default: 0]
                seen[mount.claim] = occurrence + 1
                let target = directory.appendingPathComponent("\(instance)/\(mount.claim)\(occurrence == 0 ? "" : ".\(occurrence)")").path
                try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                let staging = storage.capabilities.stageUnstage ? stagingDirectory.appendingPathComponent(volume.metadata.name).path : nil
                var staged = false
                let result = try await usage.publish(volume: volume.metadata.name, instance: instance, target: target, exclusive: modes.contains(.readWriteOncePod)) {
                    if let staging {
                        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
                        try await storage.stageVolume(StageVolumeRequest(volumeID: volume.spec.volumeHandle, stagingPath: staging))
                        staged = true
                    }
                } publish: {
                    try await storage.publishVolume(PublishVolumeRequest(volumeID: volume.spec.volumeHandle, targetPath: target, readOnly: readOnly, stagingPath: staging))
                } unstage: {
                    if let staging { try await storage.unstageVolume(UnstageVolumeRequest(volumeID: volume.spec.volumeHandle, stagingPath: staging)) }
                }
                if staged, let pending = volume.status.conditions.first(where: { $0.type == "Resized" && $0.reason == StorageSync.fileSystemResizePending }) {
                    // A fresh stage grew the file system an earlier expansion left for it.
                    var grown = volume
                    grown.status.conditions.set(Condition(type: "Resized", status: true, reason: "Resized", message: "the file system grew when the volume was staged again (\(pending.message.prefix(60))…)",
                                                          lastTransitionTime: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)))
                    _ = try? await api.updateStatus(.volume(grown))
                }
                let hostPath = (try? FileManager.default.destinationOfSymbolicLink(atPath: result.targetPath)) ?? result.targetPath
                mounts.append(RuntimeMount(hostPath: hostPath, containerPath: mount.mountPath, readOnly: readOnly))
                published.append(Published(provisioner: provisioner, volumeName: volume.metadata.name, volumeID: volume.spec.volumeHandle, path: result.targetPath))
            }
        } catch {
            await unpublish(published, for: instance)
            throw error
        }
        return (mounts, published)
    }

    /// Unpublishes, and unstages what no instance of the node uses any more. A plugin's error
    /// becomes a warning Event on the instance (the instance is going; nothing else holds it).
    func unpublish(_ published: [Published], for instance: String) async {
        for entry in published {
            guard let storage = plugins.registry.storage(named: entry.provisioner) else { continue }
            let staging = storage.capabilities.stageUnstage ? stagingDirectory.appendingPathComponent(entry.volumeName).path : nil
            do {
                try await usage.unpublish(volume: entry.volumeName, instance: instance, target: entry.path) {
                    try await storage.unpublishVolume(UnpublishVolumeRequest(volumeID: entry.volumeID, targetPath: entry.path))
                } unstage: {
                    if let staging { try await storage.unstageVolume(UnstageVolumeRequest(volumeID: entry.volumeID, stagingPath: staging)) }
                }
            } catch {
                await events.record("Instance/\(instance)", reason: "VolumeUnpublishFailed",
                                    message: "storage plugin \(entry.provisioner) could not unpublish or unstage volume \(entry.volumeName): \(error)", type: .warning)
            }
        }
    }

    /// Provisions and binds a claim here ahead of any instance (binding mode `Immediate`); a
    /// failure is an Event on the claim, and the next resync tries again.
    func provision(claimName: String) async {
        do {
            _ = try await volume(for: claimName)
        } catch {
            await events.record("VolumeClaim/\(claimName)", reason: "ProvisioningFailed", message: "node \(nodeName) could not provision it: \(error)", type: .warning)
        }
    }

    /// The plugin's handle of the snapshot a claim restores, once it can be restored here.
    private func restorable(_ name: String, for claim: VolumeClaim, provisioner: String, storage: any StorageProvisioner) async throws -> String {
        guard case .volumeSnapshot(let snapshot)? = try? await api.fetch(kind: "VolumeSnapshot", name: name) else {
            throw PluginError(.notFound, "VolumeSnapshot \"\(name)\" named by VolumeClaim \"\(claim.metadata.name)\" (spec.dataSource) does not exist")
        }
        guard snapshot.status.readyToUse, let handle = snapshot.status.snapshotHandle else {
            throw PluginError(.unavailable, "VolumeSnapshot \"\(name)\" is not ready yet; VolumeClaim \"\(claim.metadata.name)\" is provisioned from it once it is")
        }
        guard snapshot.status.provisioner == provisioner else {
            throw PluginError(.invalidArgument, "VolumeSnapshot \"\(name)\" was taken by storage plugin \(snapshot.status.provisioner ?? "?"), but VolumeClaim \"\(claim.metadata.name)\" provisions with \(provisioner); name a class of \(snapshot.status.provisioner ?? "that plugin")")
        }
        guard storage.capabilities.topology == .shared || snapshot.status.nodeName == nodeName else {
            throw PluginError(.failedPrecondition, "VolumeSnapshot \"\(name)\" lives on node \(snapshot.status.nodeName ?? "?"), not \(nodeName)")
        }
        guard storage.capabilities.restoreFromSnapshot else {
            throw PluginError(.unimplemented, "storage plugin \(provisioner) cannot fill a volume from a snapshot")
        }
        if let restoreSize = snapshot.status.restoreSize, claim.spec.size.value < restoreSize.value {
            throw PluginError(.invalidArgument, "VolumeClaim \"\(claim.metadata.name)\" asks for \(claim.spec.size), less than VolumeSnapshot \"\(name)\" holds (\(restoreSize))")
        }
        return handle
    }

    /// Node-wide staging folders, one per volume.
    private var stagingDirectory: URL { directory.deletingLastPathComponent().appendingPathComponent("staging") }

    private func bind(_ claim: VolumeClaim) async -> Result<AnyResource, APIError> {
        do {
            return .success(try await api.update(.volumeClaim(claim)))
        } catch {
            return .failure(error)
        }
    }

    /// What a claim provisions from: its StorageClass, or (no class named and none marked
    /// default) the claim's own provisioner or the node's default storage plugin.
    struct Provisioning {
        var className: String?
        var provisioner: String
        var parameters: [String: String]
        var reclaimPolicy: ReclaimPolicy
        var maxSize: Quantity?
    }

    private func provisioning(for claim: VolumeClaim) async throws -> Provisioning {
        if let className = claim.spec.storageClassName {
            guard case .storageClass(let storageClass)? = try await api.fetch(kind: "StorageClass", name: className) else {
                throw PluginError(.notFound, "StorageClass \"\(className)\" named by VolumeClaim \"\(claim.metadata.name)\" does not exist; create it or name another (capstan get storageclasses)")
            }
            return Provisioning(className: className, provisioner: storageClass.spec.provisioner, parameters: storageClass.spec.parameters,
                                reclaimPolicy: storageClass.spec.effectiveReclaimPolicy, maxSize: storageClass.spec.maxSize)
        }
        if claim.spec.provisioner == nil, let list = try? await api.list(.storageClass) {
            for case .storageClass(let storageClass) in list.items where storageClass.spec.isDefault == true {
                return Provisioning(className: storageClass.metadata.name, provisioner: storageClass.spec.provisioner, parameters: storageClass.spec.parameters,
                                    reclaimPolicy: storageClass.spec.effectiveReclaimPolicy, maxSize: storageClass.spec.maxSize)
            }
        }
        return Provisioning(className: nil, provisioner: claim.spec.provisioner ?? plugins.registry.defaults[.storage] ?? "hostpath",
                            parameters: [:], reclaimPolicy: .delete, maxSize: nil)
    }

    /// The volume bound to `claimName`, provisioned here first if the claim is unbound.
    private func volume(for claimName: String) async throws -> (String, Volume, VolumeClaim) {
        for _ in 0..<5 {
            guard case .volumeClaim(var claim)? = try? await api.fetch(kind: "VolumeClaim", name: claimName) else {
                throw PluginError(.notFound, "VolumeClaim \"\(claimName)\" does not exist; create it (kind: VolumeClaim, spec.size) before the instances that mount it")
            }
            if claim.metadata.deletionTimestamp != nil {
                throw PluginError(.failedPrecondition, "VolumeClaim \"\(claimName)\" is being deleted")
            }
            if let volumeName = claim.spec.volumeName {
                guard case .volume(let volume)? = try await api.fetch(kind: "Volume", name: volumeName) else {
                    throw PluginError(.notFound, "VolumeClaim \"\(claimName)\" is bound to Volume \"\(volumeName)\", which does not exist (phase Lost)")
                }
                // A claim naming a volume it does not own must never reach another claim's data.
                if let owner = volume.spec.claim, owner != claimName {
                    throw PluginError(.failedPrecondition, "Volume \"\(volumeName)\" belongs to claim \"\(owner)\", not \"\(claimName)\"")
                }
                if volume.metadata.deletionTimestamp != nil {
                    throw PluginError(.failedPrecondition, "Volume \"\(volumeName)\" of claim \"\(claimName)\" is being deleted")
                }
                if let owner = volume.spec.nodeName, owner != nodeName {
                    throw PluginError(.failedPrecondition, "Volume \"\(volumeName)\" of claim \"\(claimName)\" lives on node \(owner), not \(nodeName)")
                }
                return (volume.spec.provisioner, volume, claim)
            }
            let plan = try await provisioning(for: claim)
            if let maxSize = plan.maxSize, claim.spec.size.value > maxSize.value {
                throw PluginError(.invalidArgument, "VolumeClaim \"\(claimName)\" asks for \(claim.spec.size), more than StorageClass \"\(plan.className ?? "")\" allows (\(maxSize))")
            }
            guard let storage = plugins.registry.storage(named: plan.provisioner) else {
                throw PluginError(.failedPrecondition, "storage plugin \"\(plan.provisioner)\" named by VolumeClaim \"\(claimName)\" is not loaded on node \(nodeName)")
            }
            let unsupported = Set(claim.spec.effectiveAccessModes).subtracting(storage.capabilities.accessModes)
            guard unsupported.isEmpty else {
                throw PluginError(.invalidArgument, "storage plugin \"\(plan.provisioner)\" cannot serve access mode \(unsupported.sorted().map(\.rawValue).joined(separator: ", ")) asked by VolumeClaim \"\(claimName)\"; it offers \(storage.capabilities.accessModes.sorted().map(\.rawValue).joined(separator: ", "))")
            }
            var snapshotHandle: String?
            if let source = claim.spec.dataSource {
                snapshotHandle = try await restorable(source.name, for: claim, provisioner: plan.provisioner, storage: storage)
            }
            let volumeName = "\(claimName.prefix(50))-\(UUID().uuidString.prefix(8).lowercased())"
            let info: VolumeInfo
            do {
                info = try await storage.createVolume(CreateVolumeRequest(name: volumeName, sizeBytes: claim.spec.size.value, nodeName: nodeName, parameters: plan.parameters, sourceSnapshotID: snapshotHandle))
            } catch {
                // The claim says why too, not only the instance that needed it.
                await events.record("VolumeClaim/\(claimName)", reason: "ProvisioningFailed", message: "storage plugin \(plan.provisioner) on node \(nodeName) refused to create the volume: \(error)", type: .warning)
                throw error
            }
            let nodeLocal = storage.capabilities.topology == .nodeLocal
            var spec = VolumeSpec(provisioner: plan.provisioner, volumeHandle: info.volumeID, capacity: claim.spec.size,
                                  nodeName: nodeLocal ? (info.nodeName ?? nodeName) : nil, claim: claimName)
            spec.storageClassName = plan.className
            spec.reclaimPolicy = plan.reclaimPolicy
            spec.accessModes = claim.spec.effectiveAccessModes
            spec.provisionedOn = nodeName
            let volume = Volume(name: volumeName, spec: spec, status: VolumeStatus(phase: .bound, capacity: VolumeSize.quantity(bytes: info.sizeBytes)))
            do {
                _ = try await api.create(.volume(volume))
            } catch {
                await giveBack(info.volumeID, named: volumeName, of: claimName, storage: storage, provisioner: plan.provisioner)
                throw error
            }
            claim.spec.volumeName = volumeName
            switch await bind(claim) {
            case .success:
                return (plan.provisioner, volume, claim)
            case .failure(let error):
                // Not bound to ours (another agent bound it first: 409, use theirs; or the
                // write failed): give ours back, object and data, so nothing is orphaned.
                _ = try? await api.delete(.volume, volumeName, force: true)
                await giveBack(info.volumeID, named: volumeName, of: claimName, storage: storage, provisioner: plan.provisioner)
                if error.status != 409 { throw error }
            }
        }
        throw PluginError(.unavailable, "VolumeClaim \"\(claimName)\" kept changing while it was being bound; retrying")
    }

    /// Deletes a volume this agent made but could not record or bind; if the plugin refuses,
    /// the claim's Events say which volume is left on the node.
    private func giveBack(_ volumeID: String, named name: String, of claim: String, storage: any StorageProvisioner, provisioner: String) async {
        do {
            try await storage.deleteVolume(DeleteVolumeRequest(volumeID: volumeID))
        } catch {
            await events.record("VolumeClaim/\(claim)", reason: "VolumeLeaked", message: "volume \(name) (storage plugin \(provisioner), handle \(volumeID)) was made for this claim but not bound, and could not be deleted on node \(nodeName): \(error)", type: .warning)
        }
    }
}

/// Which instances of this node use which volumes: staging happens before a volume's first
/// publish on the node and unstaging after its last unpublish, one volume's calls at a time.
actor VolumeUsage {
    /// Volume → its publishes on this node, as instance and target.
    private var users: [String: Set<Use>] = [:]
    struct Use: Hashable {
        var instance: String
        var target: String
    }
    /// One volume's stage/publish/unpublish/unstage at a time (the actor alone would let them
    /// interleave at every await); different volumes proceed side by side.
    private var gates: [String: SerialGate] = [:]
    private let releases = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(256))
    /// Volumes whose last user on this node went.
    nonisolated var released: AsyncStream<String> { releases.stream }

    /// Whether an instance of this node has the volume published.
    func inUse(_ volume: String) -> Bool { !(users[volume]?.isEmpty ?? true) }

    private func gate(_ volume: String) -> SerialGate {
        if let gate = gates[volume] { return gate }
        let gate = SerialGate()
        gates[volume] = gate
        return gate
    }

    /// Stages before the node's first publish of the volume; a publish that fails after its
    /// stage unstages again, so nothing stays mounted for nobody.
    func publish(volume: String, instance: String, target: String, exclusive: Bool, stage: () async throws -> Void,
                 publish: () async throws -> PublishedVolume, unstage: () async throws -> Void) async throws -> PublishedVolume {
        try await gate(volume).run {
            let uses = users[volume] ?? []
            if exclusive, let other = uses.map(\.instance).filter({ $0 != instance }).sorted().first {
                throw PluginError(.failedPrecondition, "volume \(volume) is ReadWriteOncePod and instance \(other) already uses it")
            }
            if uses.isEmpty { try await stage() }
            do {
                let result = try await publish()
                users[volume, default: []].insert(Use(instance: instance, target: target))
                return result
            } catch {
                // Nothing stays staged for nobody; if that fails too, the error says both.
                if uses.isEmpty {
                    do {
                        try await unstage()
                    } catch let unstageError {
                        throw PluginError(.internal, "\(error); and unstaging volume \(volume) after it also failed: \(unstageError)")
                    }
                }
                throw error
            }
        }
    }

    /// The instance stops counting as a user even when the plugin fails (a reclaim then meets
    /// the plugin's own refusal, in the Volume's status, instead of waiting forever); the last
    /// user's unpublish unstages.
    func unpublish(volume: String, instance: String, target: String, unpublish: () async throws -> Void, unstage: () async throws -> Void) async throws {
        try await gate(volume).run {
            users[volume]?.remove(Use(instance: instance, target: target))
            let last = users[volume]?.isEmpty ?? true
            if last { users[volume] = nil }
            defer { if last { releases.continuation.yield(volume) } }
            try await unpublish()
            if last { try await unstage() }
        }
    }
}
