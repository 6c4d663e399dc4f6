import CapstanCore
import CapstanJSON
import Foundation
import GRDB
import Synchronization

/// Why a store call failed. Each case maps to one API status (in brackets).
public enum StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The object has problems; nothing was written. [422]
    case invalid(ValidationError)
    /// An object of that kind and name exists. [409]
    case alreadyExists(kind: String, name: String)
    /// No object of that kind and name. [404]
    case notFound(kind: String, name: String)
    /// The caller's revision is not the stored one: someone wrote in between; re-read and retry. [409]
    case conflict(kind: String, name: String, expected: UInt64, stored: UInt64)
    /// SQLite failed (disk full, file unreadable), or etcd failed in a way that leaves the
    /// outcome unknown; read again before retrying a write. [500]
    case storage(String)
    /// The store cannot be reached (no etcd member answered); nothing was done. [503: another
    /// server may serve it]
    case unavailable(String)
    /// The database holds an older revision than this data directory last committed: its WAL
    /// was deleted or truncated, or an older copy was put in its place. Opening refuses, so
    /// acknowledged writes are never silently lost.
    case rolledBack(path: String, stored: UInt64, recorded: UInt64)

    public var description: String {
        switch self {
        case .invalid(let error): return error.description
        case .alreadyExists(let kind, let name): return "\(kind) \"\(name)\" already exists"
        case .notFound(let kind, let name): return "\(kind) \"\(name)\" not found"
        case .conflict(let kind, let name, let expected, let stored):
            return "\(kind) \"\(name)\" was changed: you wrote over revision \(expected), the store has \(stored); read it again and retry"
        case .storage(let message): return "the store failed: \(message)"
        case .unavailable(let message): return "the store cannot be reached: \(message)"
        case .rolledBack(let path, let stored, let recorded):
            return """
                the store \(path) is at revision \(stored), but this data directory last committed revision \(recorded) \
                (recorded in \(path)\(ResourceStore.markerSuffix)): acknowledged writes are missing. The write-ahead log \
                \(path)-wal was probably deleted or truncated, or an older copy of the database was put in place. Put the \
                -wal file back beside the database, or restore a backup (capstan store restore), or start with \
                --accept-rollback to run on the older state and lose what came after revision \(stored)
                """
        }
    }
}

/// Every object of the cluster, in SQLite (through GRDB), with one global revision.
///
/// - One transaction per write, WAL journal, `synchronous = FULL`: a write that returned has been
///   fsynced and survives `kill -9` of the process (and a power cut).
/// - Each write takes the next global revision, stamps it on the object (`metadata.revision`),
///   and publishes one ``ResourceEvent`` on the bus's ``Topic/resources`` with that revision —
///   after the commit, on the writer's queue, so events go out in revision order and only for
///   writes that happened.
/// - Updates and deletes may name the revision they read (`metadata.revision`): if the object
///   changed since, the call fails with ``StoreError/conflict(kind:name:expected:stored:)``.
/// - Objects are validated before the transaction; an invalid one changes nothing.
public final class ResourceStore: Sendable {
    /// The database file.
    public let path: String
    public let bus: EventBus
    let pool: DatabasePool
    /// Seals Secrets' values at rest (`secrets.keys` beside the database).
    let cipher: Mutex<SecretCipher>
    /// The API tokens by id, loaded on first use (see ResourceStore+Tokens.swift).
    let tokenCache = Mutex<[String: TokenRecord]?>(nil)
    private let channel: BusChannel<ResourceEvent>
    /// Held across a transaction and the publishing of its events, so events reach the bus in
    /// revision order and only after their commit succeeded.
    private let writeLock = Mutex(())
    private let marker: RevisionMarker
    /// The JSON of the latest writes as stored (with their revision), for watch lines and
    /// write answers made without a second encode.
    public let storedForms = StoredForms(carriesRevision: true)

    /// Beside the database, the file that records the last committed revision.
    public static let markerSuffix = ".revision"

    /// Opens (or creates) the store at `path`.
    /// - Parameter acceptRollback: open even when the database is older than the revision this
    ///   data directory last committed (see ``StoreError/rolledBack(path:stored:recorded:)``).
    public init(path: String, bus: EventBus, acceptRollback: Bool = false) throws(StoreError) {
        self.path = path
        self.bus = bus
        let recorded: UInt64?
        do {
            recorded = try RevisionMarker.read(path + Self.markerSuffix)
        } catch {
            throw .storage("\(path)\(Self.markerSuffix): \(error)")
        }
        do {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            var configuration = Configuration()
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
            }
            // The cluster's state is for the server alone: 0600 before SQLite opens it, which
            // then gives its -wal and -shm files the same mode.
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
            }
            for file in [path, path + "-wal", path + "-shm"] { chmod(file, 0o600) }
            pool = try DatabasePool(path: path, configuration: configuration)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.execute(sql: """
                    CREATE TABLE objects (
                        kind TEXT NOT NULL,
                        name TEXT NOT NULL,
                        body BLOB NOT NULL,
                        PRIMARY KEY (kind, name)
                    );
                    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                    INSERT INTO counters VALUES ('revision', 0);
                    """)
            }
            migrator.registerMigration("v2-tokens") { db in
                // API tokens: only a SHA-256 of each secret is kept.
                try db.execute(sql: """
                    CREATE TABLE tokens (
                        id TEXT PRIMARY KEY,
                        secret_sha256 BLOB NOT NULL,
                        role TEXT NOT NULL,
                        node TEXT,
                        description TEXT NOT NULL,
                        created REAL NOT NULL
                    );
                    """)
            }
            try migrator.migrate(pool)
        } catch {
            throw .storage("\(path): \(error)")
        }
        let revision: UInt64
        do {
            revision = try pool.read(Self.currentRevision)
        } catch {
            throw .storage("\(path): \(error)")
        }
        if let recorded, revision < recorded, !acceptRollback {
            throw .rolledBack(path: path, stored: revision, recorded: recorded)
        }
        do {
            cipher = Mutex(try SecretCipher(path: ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent("secrets.keys")))
        } catch {
            throw .storage("\(error)")
        }
        do {
            marker = try RevisionMarker(path: path + Self.markerSuffix, revision: revision)
        } catch {
            throw .storage("\(path)\(Self.markerSuffix): \(error)")
        }
        channel = bus.channel(.resources, startingRevision: revision)
    }

    var currentCipher: SecretCipher { cipher.withLock { $0 } }

    /// Syncs the revision marker; call on a clean shutdown.
    public func close() {
        writeLock.withLock { _ in marker.sync() }
    }

    /// The revision of the newest write.
    public var revision: UInt64 {
        get throws(StoreError) {
            try reading(Self.currentRevision)
        }
    }

    /// One object, or nil.
    public func get(kind: String, name: String) throws(StoreError) -> AnyResource? {
        let cipher = currentCipher
        return try reading { db in try Self.stored(db, kind, name, cipher) }
    }

    /// Every object of a kind, by name, and the revision the list is consistent at (watch from it).
    public func list(kind: String) throws(StoreError) -> (items: [AnyResource], revision: UInt64) {
        let cipher = currentCipher
        return try reading { db in
            let items = try Data.fetchAll(db, sql: "SELECT body FROM objects WHERE kind = ? ORDER BY name", arguments: [kind]).map { try Self.decode($0, cipher) }
            return (items, try Self.currentRevision(db))
        }
    }

    /// The kinds that have objects, by name.
    public func kinds() throws(StoreError) -> [String] {
        try reading { db in try String.fetchAll(db, sql: "SELECT DISTINCT kind FROM objects ORDER BY kind") }
    }

    /// How many objects of a kind there are; with `withoutField` (a JSON path such as
    /// `$.metadata.owner`), only those where that field is absent.
    public func count(kind: String, withoutField field: String? = nil) throws(StoreError) -> Int {
        try reading { db in
            if let field {
                return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM objects WHERE kind = ? AND json_extract(body, ?) IS NULL", arguments: [kind, field]) ?? 0
            }
            return try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM objects WHERE kind = ?", arguments: [kind]) ?? 0
        }
    }

    /// The sum of a numeric field (a JSON path such as `$.spec.replicas`) over the objects of a
    /// kind, leaving out the one named `excluding`.
    public func sum(kind: String, field: String, excluding name: String) throws(StoreError) -> Int64 {
        try reading { db in
            try Int64.fetchOne(db, sql: "SELECT COALESCE(SUM(json_extract(body, ?)), 0) FROM objects WHERE kind = ? AND name != ?", arguments: [field, kind, name]) ?? 0
        }
    }

    /// Stores a new object: assigns `uid`, `creationTimestamp` and `revision`.
    @discardableResult
    public func create(_ object: AnyResource) throws(StoreError) -> AnyResource {
        try write([.create(object)])[0].get()
    }

    /// Replaces an object. When `object.metadata.revision` is set it must be the stored one.
    /// `uid` and `creationTimestamp` are kept from the stored object.
    @discardableResult
    public func update(_ object: AnyResource) throws(StoreError) -> AnyResource {
        try write([.update(object)])[0].get()
    }

    /// Removes an object; `revision`, when given, must be the stored one.
    /// - Returns: the object as it was (its `revision` is the delete's).
    @discardableResult
    public func delete(kind: String, name: String, revision expected: UInt64? = nil) throws(StoreError) -> AnyResource {
        try write([.delete(kind: kind, name: name, revision: expected)])[0].get()
    }

    /// Applies several writes in one transaction (one fsync), in order; each succeeds or fails
    /// on its own, as if applied alone, and each that succeeds takes the next revision and
    /// publishes its event after the commit. If the transaction itself fails (disk full), every
    /// write fails with ``StoreError/storage(_:)`` and nothing is written.
    public func write(_ operations: [StoreOperation]) -> [Result<AnyResource, StoreError>] {
        // Invalid objects fail before the transaction; nil marks the writes still to apply.
        let checked: [Result<AnyResource, StoreError>?] = operations.map { operation in
            if let object = operation.object, case .failure(let error) = Self.check(object) { return .failure(error) }
            return nil
        }
        return writeLock.withLock { _ in
            let outcome: [Result<AnyResource, StoreError>]
            let events: [(ResourceEvent, UInt64)]
            let forms: [(UInt64, [UInt8])]
            do {
                (outcome, events, forms) = try transaction(operations, checked)
            } catch {
                let failure = StoreError.storage("\(error)")
                return operations.map { _ in .failure(failure) }
            }
            // Only now is the transaction committed (a failed COMMIT throws above): record the
            // revision beside the database, then tell the bus.
            if let last = events.last?.1 {
                marker.record(last)
                for (revision, json) in forms { storedForms.put(revision, json) }
                for (event, revision) in events { channel.publish(event, revision: revision) }
            }
            return outcome
        }
    }

    private func transaction(_ operations: [StoreOperation], _ checked: [Result<AnyResource, StoreError>?]) throws -> ([Result<AnyResource, StoreError>], [(ResourceEvent, UInt64)], [(UInt64, [UInt8])]) {
        let cipher = currentCipher
        return try pool.write { db in
                var revision = try Self.currentRevision(db)
                var events: [(ResourceEvent, UInt64)] = []
                var forms: [(UInt64, [UInt8])] = []
                var outcome: [Result<AnyResource, StoreError>] = []
                outcome.reserveCapacity(operations.count)
                for (operation, early) in zip(operations, checked) {
                    if let early {
                        outcome.append(early)
                        continue
                    }
                    do {
                        let (stored, event, json) = try Self.apply(operation, db, revision: revision + 1, cipher: cipher)
                        revision += 1
                        events.append((event, revision))
                        if let json { forms.append((revision, json)) }
                        outcome.append(.success(stored))
                    } catch let error as StoreError {
                        outcome.append(.failure(error))
                    }
                }
                if !events.isEmpty {
                    try db.cachedStatement(sql: "UPDATE counters SET value = ? WHERE name = 'revision'").execute(arguments: [revision])
                }
                return (outcome, events, forms)
        }
    }

    /// The stored object, its event, and its JSON as written when that is plain (not a Secret's,
    /// which is sealed; not a delete's).
    private static func apply(_ operation: StoreOperation, _ db: Database, revision: UInt64, cipher: SecretCipher) throws -> (AnyResource, ResourceEvent, [UInt8]?) {
        switch operation {
        case .create(let object):
            var stored = object
            stored.metadata.uid = ObjectUID.make()
            stored.metadata.creationTimestamp = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
            stored.metadata.revision = revision
            stored.metadata.generation = 1
            let plain = try encode(stored)
            // One statement: an object already there is left as it is, and nothing changed
            // says so (no separate look first).
            try db.cachedStatement(sql: "INSERT INTO objects (kind, name, body) VALUES (?, ?, ?) ON CONFLICT (kind, name) DO NOTHING").execute(
                           arguments: [stored.kind, stored.name, try sealWithinLimit(plain, stored, cipher)])
            if db.changesCount == 0 {
                throw StoreError.alreadyExists(kind: object.kind, name: object.name)
            }
            return (stored, ResourceEvent(.added, stored), stored.kind == SecretSpec.kind ? nil : Array(plain))
        case .update(let object):
            // Only what the update keeps or checks: no decode of the whole stored object on the
            // writer's (serial) queue.
            // (SQLite parses the body once for all these: its JSON functions cache the parse.)
            let sealed = object.kind == SecretSpec.kind
            guard let row = try Row.fetchOne(db.cachedStatement(sql: """
                SELECT json_extract(body, '$.metadata.revision') AS revision, json_extract(body, '$.metadata.uid') AS uid,
                       json_extract(body, '$.metadata.creationTimestamp') AS created,
                       json_extract(body, '$.metadata.generation') AS generation,
                       \(sealed ? "body" : "json_extract(body, '$.spec')") AS spec
                FROM objects WHERE kind = ? AND name = ?
                """), arguments: [object.kind, object.name]) else {
                throw StoreError.notFound(kind: object.kind, name: object.name)
            }
            let current = UInt64(row["revision"] as Int64? ?? 0)
            if let expected = object.metadata.revision, expected != current {
                throw StoreError.conflict(kind: object.kind, name: object.name, expected: expected, stored: current)
            }
            var stored = object
            stored.metadata.uid = row["uid"]
            stored.metadata.creationTimestamp = (row["created"] as String?).flatMap(Timestamp.init(rfc3339:))
            stored.metadata.revision = revision
            // The generation moves when the spec does. The stored spec's JSON, as SQLite renders
            // the subtree (the minified text our encoder wrote, escapes and numbers as they
            // were), is compared with the new spec's JSON from the same encoder; a secret's
            // stored body is sealed, so it is opened and its spec extracted first. The new
            // generation is then in the one encode of the whole object.
            let previousGeneration = max(row["generation"] as Int64? ?? 0, 1)
            let newSpec = String(decoding: try specJSON(of: stored), as: UTF8.self)
            let storedSpec: String?
            if sealed {
                let before: Data = try cipher.openIfSealed(row["spec"] as Data? ?? Data())
                storedSpec = try String.fetchOne(db.cachedStatement(sql: "SELECT json_extract(?, '$.spec')"), arguments: [String(decoding: before, as: UTF8.self)])
            } else {
                storedSpec = row["spec"]
            }
            stored.metadata.generation = storedSpec == newSpec ? previousGeneration : previousGeneration &+ 1
            let plain = try encode(stored)
            try db.cachedStatement(sql: "UPDATE objects SET body = ? WHERE kind = ? AND name = ?").execute(
                           arguments: [try sealWithinLimit(plain, stored, cipher), stored.kind, stored.name])
            return (stored, ResourceEvent(.modified, stored), sealed ? nil : Array(plain))
        case .delete(let kind, let name, let expected):
            guard var removed = try stored(db, kind, name, cipher) else {
                throw StoreError.notFound(kind: kind, name: name)
            }
            let current = removed.metadata.revision ?? 0
            if let expected, expected != current {
                throw StoreError.conflict(kind: kind, name: name, expected: expected, stored: current)
            }
            try db.cachedStatement(sql: "DELETE FROM objects WHERE kind = ? AND name = ?").execute(arguments: [kind, name])
            removed.metadata.revision = revision
            return (removed, ResourceEvent(.deleted, removed), nil)
        }
    }

    // MARK: - Plumbing

    static func check(_ object: AnyResource) -> Result<Void, StoreError> {
        let problems = object.validate()
        if !problems.isEmpty { return .failure(.invalid(ValidationError(subject: "\(object.kind) \"\(object.name)\"", problems: problems))) }
        return .success(())
    }

    private func reading<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do {
            return try pool.read(body)
        } catch let error as StoreError {
            throw error
        } catch {
            throw .storage("\(error)")
        }
    }

    /// The global revision: the newest write's.
    private static func currentRevision(_ db: Database) throws -> UInt64 {
        try UInt64.fetchOne(db.cachedStatement(sql: "SELECT value FROM counters WHERE name = 'revision'")) ?? 0
    }

    /// The stored object; its `metadata.revision` is its last write's (the compare-and-swap token).
    private static func stored(_ db: Database, _ kind: String, _ name: String, _ cipher: SecretCipher) throws -> AnyResource? {
        try Data.fetchOne(db.cachedStatement(sql: "SELECT body FROM objects WHERE kind = ? AND name = ?"), arguments: [kind, name]).map { try decode($0, cipher) }
    }

    /// The stored form, refused past ``FieldLimits/maxObjectBytes`` (whatever the request's
    /// size was: YAML anchors can make a small body a large object).
    static func encodeWithinLimit(_ object: AnyResource, _ cipher: SecretCipher) throws -> Data {
        try sealWithinLimit(try encode(object), object, cipher)
    }

    /// `plain` (the JSON of `object`) as stored: sealed if a secret, refused past the limit.
    static func sealWithinLimit(_ plain: Data, _ object: AnyResource, _ cipher: SecretCipher) throws -> Data {
        let data = try cipher.sealIfSecret(plain, kind: object.kind)
        if data.count > FieldLimits.maxObjectBytes {
            throw StoreError.invalid(ValidationError(subject: "\(object.kind) \"\(object.name)\"", problems: [
                ValidationProblem(path: "", message: "is \(data.count) bytes as stored; one object may be at most \(FieldLimits.maxObjectBytes) bytes"),
            ]))
        }
        return data
    }

    /// The stored JSON of one object as it is in the file (sealed for a Secret), for tests.
    func storedJSON(kind: String, name: String) throws -> Data? {
        try pool.read { db in try Data.fetchOne(db, sql: "SELECT CAST(body AS BLOB) FROM objects WHERE kind = ? AND name = ?", arguments: [kind, name]) }
    }

    /// The JSON of the object's spec alone, as ``encode(_:)`` writes it inside the object.
    static func specJSON(of object: AnyResource) throws -> Data {
        switch object {
        case .node(let r): return try SortedJSON.data(r.spec)
        case .workload(let r): return try SortedJSON.data(r.spec)
        case .instance(let r): return try SortedJSON.data(r.spec)
        case .volume(let r): return try SortedJSON.data(r.spec)
        case .volumeClaim(let r): return try SortedJSON.data(r.spec)
        case .service(let r): return try SortedJSON.data(r.spec)
        case .endpoints(let r): return try SortedJSON.data(r.spec)
        case .event(let r): return try SortedJSON.data(r.spec)
        case .secret(let r): return try SortedJSON.data(r.spec)
        case .lease(let r): return try SortedJSON.data(r.spec)
        case .storageClass(let r): return try SortedJSON.data(r.spec)
        case .volumeSnapshot(let r): return try SortedJSON.data(r.spec)
        @unknown default: return try encode(object)
        }
    }

    /// The stored text: sorted keys, minified — Foundation's `.sortedKeys` output, byte for
    /// byte (``SortedJSON``), which spec comparisons and watchers rely on.
    static func encode(_ object: AnyResource) throws -> Data {
        try SortedJSON.data(object)
    }

    /// Stored documents were checked on the way in: no unknown-key scan on the way out.
    static func decode(_ data: Data, _ cipher: SecretCipher) throws -> AnyResource {
        var decoder = FastJSONDecoder()
        decoder.userInfo[.capstanTrustedDocument] = true
        return try decoder.decode(AnyResource.self, from: try cipher.openIfSealed(data))
    }
}

/// One write, for ``ResourceStore/write(_:)``.
public enum StoreOperation: Sendable, Hashable {
    case create(AnyResource)
    case update(AnyResource)
    case delete(kind: String, name: String, revision: UInt64?)

    /// The object written, for creates and updates.
    var object: AnyResource? {
        switch self {
        case .create(let object), .update(let object): object
        case .delete: nil
        }
    }
}
