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
/// The conformance kit (`Tests/PluginHostTests/StorageConformance.swift`) checks these rules.
public protocol StorageProvisioner: Sendable {
    var capabilities: StorageCapabilities { get }

    /// Creates a volume, or returns the existing one of that name with the same size.
    func createVolume(_ request: CreateVolumeRequest) async throws -> VolumeInfo
    /// Deletes a volume and its data. Succeeds when it does not exist.
    func deleteVolume(_ request: DeleteVolumeRequest) async throws
    /// Grows a volume; a size not larger than the current one is a no-op.
    func expandVolume(_ request: ExpandVolumeRequest) async throws -> VolumeInfo
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
    public func createSnapshot(_ request: CreateSnapshotRequest) async throws -> SnapshotInfo {
        throw PluginError(.unimplemented, "this provisioner does not take snapshots")
    }
    public func deleteSnapshot(_ request: DeleteSnapshotRequest) async throws {
        throw PluginError(.unimplemented, "this provisioner does not take snapshots")
    }
}

/// What a storage provisioner offers.
public struct StorageCapabilities: Sendable, Hashable {
    /// Where a volume can be used.
    public enum Topology: String, Sendable, Hashable {
        /// Only on the node it was created on: instances using it are pinned there.
        case nodeLocal
        /// From any node.
        case shared
    }

    public var topology: Topology
    public var expansion: Bool
    public var snapshots: Bool

    public init(topology: Topology, expansion: Bool = false, snapshots: Bool = false) {
        self.topology = topology
        self.expansion = expansion
        self.snapshots = snapshots
    }
}

public struct CreateVolumeRequest: Sendable, Hashable {
    /// A name unique per provisioner; the idempotency key.
    public var name: String
    public var sizeBytes: Int64
    /// The node to create it on, for node-local provisioners.
    public var nodeName: String?
    public var parameters: [String: String]

    public init(name: String, sizeBytes: Int64, nodeName: String? = nil, parameters: [String: String] = [:]) {
        self.name = name
        self.sizeBytes = sizeBytes
        self.nodeName = nodeName
        self.parameters = parameters
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
    public var readOnly: Bool
    public init(volumeID: String, targetPath: String, readOnly: Bool = false) {
        self.volumeID = volumeID
        self.targetPath = targetPath
        self.readOnly = readOnly
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
