import CapstanCore

/// Provisions volumes and makes them available to instances on a node (in the spirit of CSI).
///
/// Conforming plugins must:
/// - make every call idempotent: creating a volume that exists with the same parameters returns
///   it; deleting or unpublishing what is already gone succeeds;
/// - throw ``PluginError`` with ``PluginError/Code/alreadyExists`` when a name exists with other
///   parameters, ``PluginError/Code/notFound`` for an unknown volume on calls that need one,
///   ``PluginError/Code/unimplemented`` for calls their ``StorageCapabilities`` do not offer;
/// - be safe to call concurrently for different volumes.
///
/// The conformance kit (`capstan plugin test storage PLUGIN.so`, or the `CapstanStorageTestKit`
/// library from a vendor's own tests) checks these rules.
public protocol StorageProvisioner: Sendable {
    var capabilities: StorageCapabilities { get }

    /// Creates a volume, or returns the existing one of that name with the same size.
    func createVolume(_ request: CreateVolumeRequest) async throws -> VolumeInfo
    /// Deletes a volume and its data. Succeeds when it does not exist.
    func deleteVolume(_ request: DeleteVolumeRequest) async throws
    /// Grows a volume; a size not larger than the current one is a no-op.
    func expandVolume(_ request: ExpandVolumeRequest) async throws -> VolumeInfo
    /// Makes the volume usable on this node at `stagingPath` (SDK 1.5): attach a device, check
    /// and mount its file system. Called once per node before the first publish, when
    /// ``StorageCapabilities/stageUnstage``. Idempotent.
    func stageVolume(_ request: StageVolumeRequest) async throws
    /// Undoes ``stageVolume(_:)`` after the node's last unpublish (SDK 1.5). Succeeds when not staged.
    func unstageVolume(_ request: UnstageVolumeRequest) async throws
    /// Makes the volume's data appear at `targetPath` on this node.
    func publishVolume(_ request: PublishVolumeRequest) async throws -> PublishedVolume
    /// Undoes ``publishVolume(_:)``. Succeeds when not published.
    func unpublishVolume(_ request: UnpublishVolumeRequest) async throws
    /// Every volume this provisioner holds.
    func listVolumes() async throws -> [VolumeInfo]
    /// Space left for new volumes.
    func capacity() async throws -> StorageCapacity
    /// Takes a point-in-time copy. Only when ``StorageCapabilities/snapshots``.
    func createSnapshot(_ request: CreateSnapshotRequest) async throws -> SnapshotInfo
    /// Deletes a snapshot. Succeeds when it does not exist.
    func deleteSnapshot(_ request: DeleteSnapshotRequest) async throws
}

extension StorageProvisioner {
    /// Provisioners without a staging step (SDK 1.4 and older) do nothing here.
    public func stageVolume(_ request: StageVolumeRequest) async throws {
        guard !capabilities.stageUnstage else { throw PluginError(.unimplemented, "this provisioner declares stageUnstage but does not implement stageVolume") }
    }
    public func unstageVolume(_ request: UnstageVolumeRequest) async throws {
        guard !capabilities.stageUnstage else { throw PluginError(.unimplemented, "this provisioner declares stageUnstage but does not implement unstageVolume") }
    }
    public func createSnapshot(_ request: CreateSnapshotRequest) async throws -> SnapshotInfo {
        throw PluginError(.unimplemented, "this provisioner does not take snapshots")
    }
    public func deleteSnapshot(_ request: DeleteSnapshotRequest) async throws {
        throw PluginError(.unimplemented, "this provisioner does not take snapshots")
    }
}

/// What a storage provisioner offers. The conformance kit holds a provisioner to every
/// capability it declares, and expects `unimplemented` from the calls it does not.
public struct StorageCapabilities: Sendable, Hashable {
    /// Where a volume can be used.
    public enum Topology: String, Sendable, Hashable {
        /// Only on the node it was created on: instances using it are pinned there.
        case nodeLocal
        /// From any node.
        case shared
    }

    public var topology: Topology
    /// ``StorageProvisioner/expandVolume(_:)`` grows volumes.
    public var expansion: Bool
    /// ``StorageProvisioner/createSnapshot(_:)`` works.
    public var snapshots: Bool
    /// The host calls ``StorageProvisioner/stageVolume(_:)`` once per node before publishing,
    /// and passes the staging path to every publish (SDK 1.5).
    public var stageUnstage: Bool
    /// Expansion works while the volume is published: the file system grows under a running
    /// instance (SDK 1.5).
    public var onlineExpansion: Bool
    /// Writes past a volume's size fail (`ENOSPC`); false when sizes are only accounted, as with
    /// plain directories (SDK 1.5).
    public var enforcesSize: Bool
    /// ``CreateVolumeRequest/sourceSnapshotID`` fills a new volume from a snapshot (SDK 1.5).
    public var restoreFromSnapshot: Bool
    /// The access modes its volumes can serve (SDK 1.5). Node-local volumes serve one node.
    public var accessModes: Set<VolumeAccessMode>

    /// SDK 1.0–1.4 shape: no staging, sizes accounted only, the access modes of the topology.
    public init(topology: Topology, expansion: Bool = false, snapshots: Bool = false) {
        self.init(topology: topology, expansion: expansion, snapshots: snapshots, stageUnstage: false, onlineExpansion: false,
                  enforcesSize: false, restoreFromSnapshot: false, accessModes: nil)
    }

    /// SDK 1.5.
    public init(topology: Topology, expansion: Bool = false, snapshots: Bool = false, stageUnstage: Bool, onlineExpansion: Bool = false,
                enforcesSize: Bool = false, restoreFromSnapshot: Bool = false, accessModes: Set<VolumeAccessMode>? = nil) {
        self.topology = topology
        self.expansion = expansion
        self.snapshots = snapshots
        self.stageUnstage = stageUnstage
        self.onlineExpansion = onlineExpansion
        self.enforcesSize = enforcesSize
        self.restoreFromSnapshot = restoreFromSnapshot
        self.accessModes = accessModes ?? (topology == .nodeLocal ? [.readWriteOnce, .readOnlyMany, .readWriteOncePod] : Set(VolumeAccessMode.allCases))
    }
}

public struct CreateVolumeRequest: Sendable, Hashable {
    /// A name unique per provisioner; the idempotency key.
    public var name: String
    public var sizeBytes: Int64
    /// The node to create it on, for node-local provisioners.
    public var nodeName: String?
    public var parameters: [String: String]
    /// Fill the new volume from this snapshot (SDK 1.5; only when
    /// ``StorageCapabilities/restoreFromSnapshot``). Part of the idempotency key.
    public var sourceSnapshotID: String?

    public init(name: String, sizeBytes: Int64, nodeName: String? = nil, parameters: [String: String] = [:]) {
        self.name = name
        self.sizeBytes = sizeBytes
        self.nodeName = nodeName
        self.parameters = parameters
        self.sourceSnapshotID = nil
    }

    /// SDK 1.5.
    public init(name: String, sizeBytes: Int64, nodeName: String? = nil, parameters: [String: String] = [:], sourceSnapshotID: String?) {
        self.init(name: name, sizeBytes: sizeBytes, nodeName: nodeName, parameters: parameters)
        self.sourceSnapshotID = sourceSnapshotID
    }
}

public struct VolumeInfo: Sendable, Hashable {
    /// The provisioner's identifier for later calls.
    public var volumeID: String
    public var name: String
    public var sizeBytes: Int64
    /// For node-local volumes: the node whose instances can use it.
    public var nodeName: String?

    public init(volumeID: String, name: String, sizeBytes: Int64, nodeName: String? = nil) {
        self.volumeID = volumeID
        self.name = name
        self.sizeBytes = sizeBytes
        self.nodeName = nodeName
    }
}

public struct DeleteVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    public init(volumeID: String) { self.volumeID = volumeID }
}

public struct ExpandVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    public var sizeBytes: Int64
    public init(volumeID: String, sizeBytes: Int64) {
        self.volumeID = volumeID
        self.sizeBytes = sizeBytes
    }
}

public struct PublishVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    /// Where the data must appear; created by the provisioner if missing.
    public var targetPath: String
    /// The instance must not be able to write through this publish.
    public var readOnly: Bool
    /// Where ``StorageProvisioner/stageVolume(_:)`` staged it (SDK 1.5); nil when the
    /// provisioner does not stage.
    public var stagingPath: String?
    public init(volumeID: String, targetPath: String, readOnly: Bool = false) {
        self.volumeID = volumeID
        self.targetPath = targetPath
        self.readOnly = readOnly
        self.stagingPath = nil
    }

    /// SDK 1.5.
    public init(volumeID: String, targetPath: String, readOnly: Bool = false, stagingPath: String?) {
        self.init(volumeID: volumeID, targetPath: targetPath, readOnly: readOnly)
        self.stagingPath = stagingPath
    }
}

/// SDK 1.5: makes a volume usable on the node, once, at a node-wide path.
public struct StageVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    /// A folder the host made for this volume on this node; the provisioner mounts here.
    public var stagingPath: String
    public init(volumeID: String, stagingPath: String) {
        self.volumeID = volumeID
        self.stagingPath = stagingPath
    }
}

/// SDK 1.5.
public struct UnstageVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    public var stagingPath: String
    public init(volumeID: String, stagingPath: String) {
        self.volumeID = volumeID
        self.stagingPath = stagingPath
    }
}

public struct PublishedVolume: Sendable, Hashable {
    public var volumeID: String
    public var targetPath: String
    public init(volumeID: String, targetPath: String) {
        self.volumeID = volumeID
        self.targetPath = targetPath
    }
}

public struct UnpublishVolumeRequest: Sendable, Hashable {
    public var volumeID: String
    public var targetPath: String
    public init(volumeID: String, targetPath: String) {
        self.volumeID = volumeID
        self.targetPath = targetPath
    }
}

public struct StorageCapacity: Sendable, Hashable {
    public var availableBytes: Int64
    public var totalBytes: Int64
    public init(availableBytes: Int64, totalBytes: Int64) {
        self.availableBytes = availableBytes
        self.totalBytes = totalBytes
    }
}

public struct CreateSnapshotRequest: Sendable, Hashable {
    public var name: String
    public var sourceVolumeID: String
    public init(name: String, sourceVolumeID: String) {
        self.name = name
        self.sourceVolumeID = sourceVolumeID
    }
}

public struct SnapshotInfo: Sendable, Hashable {
    public var snapshotID: String
    public var sourceVolumeID: String
    public var sizeBytes: Int64
    public init(snapshotID: String, sourceVolumeID: String, sizeBytes: Int64) {
        self.snapshotID = snapshotID
        self.sourceVolumeID = sourceVolumeID
        self.sizeBytes = sizeBytes
    }
}

public struct DeleteSnapshotRequest: Sendable, Hashable {
    public var snapshotID: String
    public init(snapshotID: String) { self.snapshotID = snapshotID }
}
