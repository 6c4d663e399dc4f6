import CapstanSDK
import Foundation

/// A deliberately broken storage driver, for the conformance kit's own tests: the kit must fail
/// it, naming each broken rule.
/// - **idempotent**: a second create of the same name makes a second volume;
/// - **cleanup**: delete moves the data to `<root>/trash/` and leaves it there;
/// - **capabilities**: it declares expansion, and expand answers the new size without growing
///   anything (listVolumes keeps the old size).
/// Otherwise it is a plain directory driver, publishing by symbolic link.
struct BrokenStorageConfiguration: PluginConfiguration {
    init(from decoder: any Decoder) throws {}
    func validate() -> [ValidationProblem] { [] }
}

actor BrokenStorage: StorageProvisioner {
    let root: URL
    private var sizes: [String: Int64] = [:]
    private var counter = 0

    init(context: PluginContext) throws {
        root = URL(fileURLWithPath: context.stateDirectory)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("volumes"), withIntermediateDirectories: true)
    }

    nonisolated var capabilities: StorageCapabilities { StorageCapabilities(topology: .nodeLocal, expansion: true) }

    func createVolume(_ request: CreateVolumeRequest) async throws -> VolumeInfo {
        guard request.sizeBytes > 0, DNSLabel.problem(with: request.name) == nil else { throw PluginError(.invalidArgument, "bad name or size") }
        if let size = sizes[request.name], size != request.sizeBytes { throw PluginError(.alreadyExists, "\(request.name) exists with another size") }
        // Broken: not idempotent.
        counter += 1
        let id = sizes[request.name] == nil ? request.name : "\(request.name)-\(counter)"
        sizes[request.name] = request.sizeBytes
        sizes[id] = request.sizeBytes
        try FileManager.default.createDirectory(at: root.appendingPathComponent("volumes/\(id)"), withIntermediateDirectories: true)
        return VolumeInfo(volumeID: id, name: id, sizeBytes: request.sizeBytes)
    }

    func deleteVolume(_ request: DeleteVolumeRequest) async throws {
        guard sizes.removeValue(forKey: request.volumeID) != nil else { return }
        // Broken: leaks the data in a folder nobody removes.
        let trash = root.appendingPathComponent("trash")
        try FileManager.default.createDirectory(at: trash, withIntermediateDirectories: true)
        try? FileManager.default.moveItem(at: root.appendingPathComponent("volumes/\(request.volumeID)"), to: trash.appendingPathComponent(request.volumeID))
    }

    func expandVolume(_ request: ExpandVolumeRequest) async throws -> VolumeInfo {
        guard sizes[request.volumeID] != nil else { throw PluginError(.notFound, "no volume \(request.volumeID)") }
        // Broken: claims the new size, changes nothing.
        return VolumeInfo(volumeID: request.volumeID, name: request.volumeID, sizeBytes: request.sizeBytes)
    }

    func publishVolume(_ request: PublishVolumeRequest) async throws -> PublishedVolume {
        guard sizes[request.volumeID] != nil else { throw PluginError(.notFound, "no volume \(request.volumeID)") }
        if request.readOnly { throw PluginError(.failedPrecondition, "read-only publishing is not offered") }
        let data = root.appendingPathComponent("volumes/\(request.volumeID)").path
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: request.targetPath)) != data {
            try FileManager.default.createDirectory(atPath: (request.targetPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: request.targetPath, withDestinationPath: data)
        }
        return PublishedVolume(volumeID: request.volumeID, targetPath: request.targetPath)
    }

    func unpublishVolume(_ request: UnpublishVolumeRequest) async throws {
        if (try? FileManager.default.destinationOfSymbolicLink(atPath: request.targetPath)) != nil { try FileManager.default.removeItem(atPath: request.targetPath) }
    }

    func listVolumes() async throws -> [VolumeInfo] {
        sizes.sorted { $0.key < $1.key }.map { VolumeInfo(volumeID: $0.key, name: $0.key, sizeBytes: $0.value) }
    }

    func capacity() async throws -> StorageCapacity { StorageCapacity(availableBytes: 1 << 30, totalBytes: 1 << 30) }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "broken-storage", version: "0.0.1", kinds: [.storage]) { registrar in
        try registrar.register(storage: "broken-storage", configuration: BrokenStorageConfiguration.self) { _, context in
            try BrokenStorage(context: context)
        }
    }
}
