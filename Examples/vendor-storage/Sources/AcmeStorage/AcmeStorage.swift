import CapstanSDK
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Acme's settings, under `config:` in capstan.yaml.
public struct AcmeConfiguration: PluginConfiguration {
    /// Where Acme keeps volumes (default: the plugin's state directory).
    public var pool: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case pool }

    public init(pool: String? = nil) { self.pool = pool }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        pool = try container.decodeIfPresent(String.self, forKey: .pool)
    }

    public func validate() -> [ValidationProblem] {
        guard let pool, !pool.hasPrefix("/") else { return [] }
        return [ValidationProblem(path: "pool", message: "\"\(pool)\" is not an absolute path")]
    }
}

/// A small vendor driver: each volume is a folder in Acme's pool, listed in one index file
/// (`index.json`, rewritten atomically). Publishing bind-mounts the folder at the target —
/// read-only when asked — so it needs root. Sizes are accounted, not enforced, and it says so
/// (`enforcesSize: false`); it neither expands nor snapshots, and says so too: the kit holds it
/// to exactly what it declares.
public actor AcmeStorage: StorageProvisioner {
    let pool: URL
    let node: String?

    struct Entry: Codable, Equatable {
        var sizeBytes: Int64
    }

    public init(configuration: AcmeConfiguration, context: PluginContext) throws {
        pool = URL(fileURLWithPath: configuration.pool ?? context.stateDirectory)
        node = context.nodeName
        try FileManager.default.createDirectory(at: pool.appendingPathComponent("volumes"), withIntermediateDirectories: true)
    }

    public nonisolated var capabilities: StorageCapabilities {
        StorageCapabilities(topology: .nodeLocal, stageUnstage: false, accessModes: [.readWriteOnce, .readWriteOncePod])
    }

    public func createVolume(_ request: CreateVolumeRequest) async throws -> VolumeInfo {
        if let problem = DNSLabel.problem(with: request.name) { throw PluginError(.invalidArgument, "name \(problem)") }
        guard request.sizeBytes > 0 else { throw PluginError(.invalidArgument, "size must be more than zero") }
        if let key = request.parameters.keys.sorted().first { throw PluginError(.invalidArgument, "Acme takes no parameters; got \"\(key)\"") }
        var index = try readIndex()
        if let existing = index[request.name] {
            guard existing.sizeBytes == request.sizeBytes else { throw PluginError(.alreadyExists, "\(request.name) exists with \(existing.sizeBytes) bytes") }
        } else {
            try FileManager.default.createDirectory(at: folder(request.name), withIntermediateDirectories: true)
            index[request.name] = Entry(sizeBytes: request.sizeBytes)
            try writeIndex(index)
        }
        return VolumeInfo(volumeID: request.name, name: request.name, sizeBytes: request.sizeBytes, nodeName: request.nodeName ?? node)
    }

    public func deleteVolume(_ request: DeleteVolumeRequest) async throws {
        var index = try readIndex()
        guard index[request.volumeID] != nil else { return }
        try? FileManager.default.removeItem(at: folder(request.volumeID))
        index[request.volumeID] = nil
        try writeIndex(index)
    }

    public func expandVolume(_ request: ExpandVolumeRequest) async throws -> VolumeInfo {
        throw PluginError(.unimplemented, "Acme volumes do not grow")
    }

    public func publishVolume(_ request: PublishVolumeRequest) async throws -> PublishedVolume {
        guard try readIndex()[request.volumeID] != nil else { throw PluginError(.notFound, "no Acme volume \(request.volumeID)") }
        if !isMountPoint(request.targetPath) {
            guard geteuid() == 0 else { throw PluginError(.failedPrecondition, "Acme publishes with bind mounts: run the agent as root") }
            try FileManager.default.createDirectory(atPath: request.targetPath, withIntermediateDirectories: true)
            guard mount(folder(request.volumeID).path, request.targetPath, nil, UInt(MS_BIND), nil) == 0 else {
                throw PluginError(.internal, "bind mount at \(request.targetPath): \(String(cString: strerror(errno)))")
            }
            if request.readOnly, mount(nil, request.targetPath, nil, UInt(MS_BIND | MS_REMOUNT | MS_RDONLY), nil) != 0 {
                _ = umount2(request.targetPath, 0)
                throw PluginError(.internal, "read-only remount at \(request.targetPath): \(String(cString: strerror(errno)))")
            }
        }
        return PublishedVolume(volumeID: request.volumeID, targetPath: request.targetPath)
    }

    public func unpublishVolume(_ request: UnpublishVolumeRequest) async throws {
        while isMountPoint(request.targetPath) {
            guard umount2(request.targetPath, 0) == 0 else { throw PluginError(.internal, "unmount \(request.targetPath): \(String(cString: strerror(errno)))") }
        }
        _ = rmdir(request.targetPath)
    }

    public func listVolumes() async throws -> [VolumeInfo] {
        try readIndex().sorted { $0.key < $1.key }.map { VolumeInfo(volumeID: $0.key, name: $0.key, sizeBytes: $0.value.sizeBytes, nodeName: node) }
    }

    public func capacity() async throws -> StorageCapacity {
        let attributes = try FileManager.default.attributesOfFileSystem(forPath: pool.path)
        let free = (attributes[.systemFreeSize] as? NSNumber)?.int64Value ?? 0
        let total = (attributes[.systemSize] as? NSNumber)?.int64Value ?? 0
        return StorageCapacity(availableBytes: min(free, total), totalBytes: total)
    }

    // MARK: Helpers

    private func folder(_ name: String) -> URL { pool.appendingPathComponent("volumes/\(name)") }

    private func readIndex() throws -> [String: Entry] {
        guard let data = FileManager.default.contents(atPath: pool.appendingPathComponent("index.json").path) else { return [:] }
        return try JSONDecoder().decode([String: Entry].self, from: data)
    }

    private func writeIndex(_ index: [String: Entry]) throws {
        try JSONEncoder().encode(index).write(to: pool.appendingPathComponent("index.json"), options: .atomic)
    }

    private func isMountPoint(_ path: String) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        return table.split(separator: "\n").contains { $0.split(separator: " ").count > 4 && $0.split(separator: " ")[4] == path }
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "acme", version: "0.1.0", kinds: [.storage]) { registrar in
        try registrar.register(storage: "acme", configuration: AcmeConfiguration.self) { configuration, context in
            try AcmeStorage(configuration: configuration, context: context)
        }
    }
}
