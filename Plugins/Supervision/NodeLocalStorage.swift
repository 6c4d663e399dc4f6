import CapstanSDK
import Foundation

/// Settings every node-local storage plugin takes (`hostpath`, `loopback`).
public struct NodeLocalStorageConfiguration: PluginConfiguration {
    /// Where volumes live; defaults to the plugin's state directory.
    public var root: String?
    /// The most all volumes together may claim; defaults to the file system's free space.
    public var capacity: Quantity?

    enum CodingKeys: String, CodingKey, CaseIterable { case root, capacity }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        root = try container.decodeIfPresent(String.self, forKey: .root)
        capacity = try container.decodeIfPresent(Quantity.self, forKey: .capacity)
    }

    public func validate() -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if let root, !root.hasPrefix("/") { problems.append(ValidationProblem(path: "root", message: "\"\(root)\" is not an absolute path")) }
        if let capacity, capacity.milliValue <= 0 { problems.append(ValidationProblem(path: "capacity", message: "must be more than zero (e.g. 10Gi)")) }
        return problems
    }
}

/// The space a node-local storage plugin may promise: the configured capacity, and never more
/// than the file system under its root has free. Sums saturate: no size a caller sends traps.
public struct StorageSpace: Sendable {
    public let root: URL
    public let limit: Int64?

    public init(root: URL, limit: Int64?) {
        self.root = root
        self.limit = limit
    }

    /// The file system's free and total bytes.
    public func fileSystem() throws -> (available: Int64, total: Int64) {
        let attributes = try FileManager.default.attributesOfFileSystem(forPath: root.path)
        let free = (attributes[.systemFreeSize] as? NSNumber)?.int64Value ?? 0
        let total = (attributes[.systemSize] as? NSNumber)?.int64Value ?? 0
        return (free, total)
    }

    /// What ``StorageProvisioner/capacity()`` answers when `claimed` bytes are promised.
    public func capacity(claimed: Int64) throws -> StorageCapacity {
        let (available, total) = try fileSystem()
        guard let limit else { return StorageCapacity(availableBytes: available, totalBytes: total) }
        return StorageCapacity(availableBytes: max(0, min(available, limit - min(claimed, limit))), totalBytes: limit)
    }

    /// Refuses (`resourceExhausted`) to promise `bytes` more on top of `claimed`.
    public func reserve(_ bytes: Int64, claimed: Int64) throws {
        let (available, _) = try fileSystem()
        if let limit {
            guard bytes <= limit - min(claimed, limit) else {
                throw PluginError(.resourceExhausted, "no room for \(bytes) bytes: \(claimed) of the configured \(limit) are claimed")
            }
        }
        guard bytes <= available else {
            throw PluginError(.resourceExhausted, "no room for \(bytes) bytes: the file system at \(root.path) has \(available) free")
        }
    }

    /// `invalidArgument` unless `name` is a DNS label: names become folder names.
    public static func checkName(_ name: String, field: String) throws {
        if let problem = DNSLabel.problem(with: name) {
            throw PluginError(.invalidArgument, "\(field) \(problem)", problems: [ValidationProblem(path: field, message: problem)])
        }
    }

    /// Folders an interrupted create or delete left (dot-names) under each of `folders`; for a
    /// plugin's start, before any call runs.
    public func removeLeftovers(in folders: [String], before remove: (URL) -> Void = { _ in }) throws {
        for folder in folders {
            let url = root.appendingPathComponent(folder)
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            for name in (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? [] where name.hasPrefix(".") {
                let leftover = url.appendingPathComponent(name)
                remove(leftover)
                try? FileManager.default.removeItem(at: leftover)
            }
        }
    }
}

/// One JSON record per object, in `<folder>/<name>/<fileName>`, written atomically (write, then
/// rename): a crash never leaves half a record. Dot-names are work in progress, never listed.
public struct RecordFolder<Record: Codable & Sendable>: Sendable {
    public let folder: URL
    public let fileName: String

    public init(_ folder: URL, fileName: String) {
        self.folder = folder
        self.fileName = fileName
    }

    /// The object's own folder.
    public func url(_ name: String) -> URL { folder.appendingPathComponent(name) }

    /// Nil when there is none, or `name` could not be one (not a DNS label).
    public func read(_ name: String) throws -> Record? {
        guard DNSLabel.problem(with: name) == nil else { return nil }
        guard let data = FileManager.default.contents(atPath: url(name).appendingPathComponent(fileName).path) else { return nil }
        return try JSONDecoder().decode(Record.self, from: data)
    }

    public func all() throws -> [Record] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return try names.filter { !$0.hasPrefix(".") }.sorted().compactMap { try read($0) }
    }

    /// Writes into `name`'s folder, or into `directory` (a `.partial` folder being built).
    public func write(_ record: Record, name: String, in directory: URL? = nil) throws {
        try JSONEncoder().encode(record).write(to: (directory ?? url(name)).appendingPathComponent(fileName), options: .atomic)
    }
}

/// What a node-local plugin keeps of a snapshot (`snapshot.json`).
public struct SnapshotRecord: Codable, Equatable, Sendable {
    public var name: String
    /// The volume it was taken of.
    public var source: String
    public var sizeBytes: Int64

    public init(name: String, source: String, sizeBytes: Int64) {
        self.name = name
        self.source = source
        self.sizeBytes = sizeBytes
    }
}
