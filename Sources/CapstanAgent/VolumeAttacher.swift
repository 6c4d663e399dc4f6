import CapstanAPI
import CapstanCore
import CapstanSDK
import Foundation
import PluginHost

/// Makes an instance's claimed volumes available on this node through the storage plugins, like
/// the kubelet's volume manager with a CSI driver whose volumes are node-local:
/// - an unbound VolumeClaim is provisioned on first use, here (`createVolume` with this node);
///   a Volume object records it and the claim is bound to it (compare-and-swap, so two agents
///   racing for one claim end with one volume);
/// - each use publishes the volume at `<state>/volumes/<instance>/<claim>` (`publishVolume`),
///   which the runtime bind-mounts; stopping the instance unpublishes it;
/// - the data stays with the volume: a restarted, replaced or rescheduled instance that claims it
///   again finds it (the scheduler pins instances to the node of their node-local volumes).
struct VolumeAttacher: Sendable {
    let api: APIClient
    let plugins: PluginHost
    let nodeName: String
    let directory: URL

    struct Published: Sendable {
        var provisioner: String
        var volumeID: String
        var path: String
    }

    /// Publishes every claim the template mounts; returns the runtime mounts and what was
    /// published (to unpublish later).
    func publish(_ template: InstanceTemplate, for instance: String) async throws -> (mounts: [RuntimeMount], published: [Published]) {
        var mounts: [RuntimeMount] = []
        var published: [Published] = []
        for mount in template.volumeMounts {
            let readOnly = mount.readOnly ?? false
            let (provisioner, volume) = try await volume(for: mount.claim)
            guard let storage = plugins.registry.storage(named: provisioner) else {
                throw PluginError(.failedPrecondition, "storage plugin \"\(provisioner)\" of volume \(volume.metadata.name) is not loaded on node \(nodeName)")
            }
            let target = directory.appendingPathComponent("\(instance)/\(mount.claim)").path
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let result = try await storage.publishVolume(PublishVolumeRequest(volumeID: volume.spec.volumeHandle, targetPath: target, readOnly: readOnly))
            let hostPath = (try? FileManager.default.destinationOfSymbolicLink(atPath: result.targetPath)) ?? result.targetPath
            mounts.append(RuntimeMount(hostPath: hostPath, containerPath: mount.mountPath, readOnly: readOnly))
            published.append(Published(provisioner: provisioner, volumeID: volume.spec.volumeHandle, path: result.targetPath))
        }
        return (mounts, published)
    }

    func unpublish(_ published: [Published]) async {
        for entry in published {
            try? await plugins.registry.storage(named: entry.provisioner)?.unpublishVolume(UnpublishVolumeRequest(volumeID: entry.volumeID, targetPath: entry.path))
        }
    }

    private func bind(_ claim: VolumeClaim) async -> Result<AnyResource, APIError> {
        do {
            return .success(try await api.update(.volumeClaim(claim)))
        } catch {
            return .failure(error)
        }
    }

    /// The volume bound to `claimName`, provisioned here first if the claim is unbound.
    private func volume(for claimName: String) async throws -> (String, Volume) {
        for _ in 0..<5 {
            guard case .volumeClaim(var claim)? = try? await api.fetch(kind: "VolumeClaim", name: claimName) else {
                throw PluginError(.notFound, "VolumeClaim \"\(claimName)\" does not exist; create it (kind: VolumeClaim, spec.size) before the instances that mount it")
            }
            if let volumeName = claim.spec.volumeName {
                guard case .volume(let volume)? = try await api.fetch(kind: "Volume", name: volumeName) else {
                    throw PluginError(.notFound, "VolumeClaim \"\(claimName)\" is bound to Volume \"\(volumeName)\", which does not exist")
                }
                if let owner = volume.spec.nodeName, owner != nodeName {
                    throw PluginError(.failedPrecondition, "Volume \"\(volumeName)\" of claim \"\(claimName)\" lives on node \(owner), not \(nodeName)")
                }
                return (volume.spec.provisioner, volume)
            }
            let provisioner = claim.spec.provisioner ?? plugins.registry.defaults[.storage] ?? "hostpath"
            guard let storage = plugins.registry.storage(named: provisioner) else {
                throw PluginError(.failedPrecondition, "storage plugin \"\(provisioner)\" named by VolumeClaim \"\(claimName)\" is not loaded on node \(nodeName)")
            }
            let volumeName = "\(claimName)-\(UUID().uuidString.prefix(8).lowercased())"
            let info = try await storage.createVolume(CreateVolumeRequest(name: volumeName, sizeBytes: claim.spec.size.value, nodeName: nodeName))
            let nodeLocal = storage.capabilities.topology == .nodeLocal
            let volume = Volume(name: volumeName, spec: VolumeSpec(provisioner: provisioner, volumeHandle: info.volumeID, capacity: claim.spec.size,
                                                                 nodeName: nodeLocal ? (info.nodeName ?? nodeName) : nil, claim: claimName))
            _ = try await api.create(.volume(volume))
            claim.spec.volumeName = volumeName
            let bound = await bind(claim)
            switch bound {
            case .success:
                return (provisioner, volume)
            case .failure(let error) where error.status == 409:
                // Another agent bound it first: give ours back and use theirs.
                _ = try? await api.delete(.volume, volumeName)
                try? await storage.deleteVolume(DeleteVolumeRequest(volumeID: info.volumeID))
            case .failure(let error):
                throw error
            }
        }
        throw PluginError(.unavailable, "VolumeClaim \"\(claimName)\" kept changing while it was being bound; retrying")
    }
}
