import CapstanCore
import CapstanEtcd
import Foundation

/// Capstan's objects in etcd, with the semantics of the SQLite ``ResourceStore`` (issue 13):
/// - one object per key, `/capstan/objects/<Kind>/<name>`, its JSON as the SQLite store writes
///   it (secrets sealed with the same cipher); its `metadata.revision` is the key's
///   `mod_revision` — etcd's one global revision is Capstan's;
/// - create is a transaction on `create_revision == 0`; update and delete compare the key's
///   `mod_revision` with the one the caller read (`metadata.revision`): a change in between is a
///   ``StoreError/conflict(kind:name:expected:stored:)``, and nothing is written;
/// - `uid`, `creationTimestamp` and `generation` (raised only when the spec changes) are kept as
///   the SQLite store keeps them; invalid or oversized objects are refused before etcd is asked;
/// - ``events(after:)`` is etcd's watch from a revision: committed writes only, in revision
///   order, from any server; a revision etcd compacted away ends it with
///   ``EtcdError/compacted(_:)`` (the API's 410 Gone: list again).
///
/// Every write that may be contended (update, delete) is a single transaction; a write that
/// names no revision retries its read-compare-write a few times instead of overwriting blindly.
public final class EtcdObjectStore: Sendable {
    public let client: EtcdClient
    public let prefix: String
    let cipher: SecretCipher
    /// The JSON of the latest writes as stored (without their revision): this store's own,
    /// and what a watch of ``events(after:progress:stored:)`` is told.
    public let storedForms = StoredForms(carriesRevision: false)

    /// - Parameters:
    ///   - cipher: seals Secrets before they leave the server (the data directory's key).
    ///   - prefix: the key prefix of every object (one etcd may hold several clusters).
    public init(client: EtcdClient, cipher: SecretCipher, prefix: String = "/capstan/objects/") {
        self.client = client
        self.cipher = cipher
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
    }

    func key(_ kind: String, _ name: String) -> [UInt8] { Array("\(prefix)\(kind)/\(name)".utf8) }

    // MARK: Reads

    public func get(kind: String, name: String) async throws(StoreError) -> AnyResource? {
        let kvs = try await etcd { try await self.client.range(self.key(kind, name)).kvs }
        return try kvs.first.map(object)
    }

    /// Every object of a kind and the revision the list was read at (to watch from).
    /// - Parameter revision: read as of this revision (0: now); compacted history fails.
    ///   Read in pages of ``pageSize`` keys, all at the revision of the first, so a kind of any
    ///   size is listed consistently without one huge answer.
    public func list(kind: String, revision at: UInt64 = 0) async throws(StoreError) -> (items: [AnyResource], revision: UInt64) {
        let start = Array("\(prefix)\(kind)/".utf8)
        let end = EtcdClient.prefixEnd(start)
        var from = start
        var revision = Int64(clamping: at)
        var items: [AnyResource] = []
        while true {
            let (pinned, key) = (revision, from)
            let (kvs, read) = try await etcd { try await self.client.range(key, rangeEnd: end, revision: pinned, limit: Self.pageSize) }
            if revision == 0 { revision = read }
            items.reserveCapacity(items.count + kvs.count)
            for kv in kvs { items.append(try object(kv)) }
            guard kvs.count == Self.pageSize, let last = kvs.last else { break }
            from = last.key + [0]
        }
        return (items, UInt64(max(revision, 0)))
    }

    /// Keys per range request of a list.
    static let pageSize: Int64 = 500

    // MARK: Writes

    /// - Parameter fence: comparisons the write also needs to hold, e.g. the leader's
    ///   ``LeaderElection/fence(_:)``: a deposed leader's write then fails (`storage`).
    public func create(_ object: AnyResource, fence: [EtcdClient.Compare] = []) async throws(StoreError) -> AnyResource {
        if case .failure(let error) = ResourceStore.check(object) { throw error }
        var stored = object
        stored.metadata.uid = ObjectUID.make()
        stored.metadata.creationTimestamp = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
        stored.metadata.revision = nil
        stored.metadata.generation = 1
        let body = try encoded(stored)
        let key = key(object.kind, object.name)
        let result = try await etcd { try await self.client.txn([.absent(key)] + fence, success: [.put(key: key, value: body, lease: nil)], failure: [.get(key: key)]) }
        guard result.succeeded else {
            if result.kvs.isEmpty && !fence.isEmpty { throw Self.fenced }
            throw .alreadyExists(kind: object.kind, name: object.name)
        }
        stored.metadata.revision = UInt64(result.revision)
        if stored.kind != SecretSpec.kind { storedForms.put(UInt64(result.revision), body) }
        return stored
    }

    public func update(_ object: AnyResource, fence: [EtcdClient.Compare] = []) async throws(StoreError) -> AnyResource {
        if case .failure(let error) = ResourceStore.check(object) { throw error }
        let key = key(object.kind, object.name)
        for _ in 0..<5 {
            guard let currentKV = try await etcd({ try await self.client.range(key).kvs.first }) else {
                throw .notFound(kind: object.kind, name: object.name)
            }
            let current = try self.object(currentKV)
            let stored = UInt64(currentKV.modRevision)
            if let expected = object.metadata.revision, expected != stored {
                throw .conflict(kind: object.kind, name: object.name, expected: expected, stored: stored)
            }
            var next = object
            next.metadata.uid = current.metadata.uid
            next.metadata.creationTimestamp = current.metadata.creationTimestamp
            next.metadata.revision = nil
            let generation = max(current.metadata.generation ?? 1, 1)
            next.metadata.generation = try sameSpec(next, current) ? generation : generation &+ 1
            let body = try encoded(next)
            let result = try await etcd { try await self.client.txn([.unchanged(key, since: currentKV.modRevision)] + fence, success: [.put(key: key, value: body, lease: nil)], failure: [.get(key: key)]) }
            if result.succeeded {
                next.metadata.revision = UInt64(result.revision)
                if next.kind != SecretSpec.kind { storedForms.put(UInt64(result.revision), body) }
                return next
            }
            // Written or deleted in between: a caller that named a revision is told (with the
            // key's own revision); one that did not reads again.
            guard let now = result.kvs.first else { throw .notFound(kind: object.kind, name: object.name) }
            if now.modRevision == currentKV.modRevision && !fence.isEmpty { throw Self.fenced }
            if let expected = object.metadata.revision {
                throw .conflict(kind: object.kind, name: object.name, expected: expected, stored: UInt64(max(now.modRevision, 0)))
            }
        }
        throw .storage("\(object.kind) \"\(object.name)\" kept changing while it was being written; retry")
    }

    /// Deletes; returns the object as it was.
    public func delete(kind: String, name: String, revision expected: UInt64? = nil, fence: [EtcdClient.Compare] = []) async throws(StoreError) -> AnyResource {
        let key = key(kind, name)
        for _ in 0..<5 {
            guard let currentKV = try await etcd({ try await self.client.range(key).kvs.first }) else {
                throw .notFound(kind: kind, name: name)
            }
            if let expected, expected != UInt64(currentKV.modRevision) {
                throw .conflict(kind: kind, name: name, expected: expected, stored: UInt64(currentKV.modRevision))
            }
            let result = try await etcd { try await self.client.txn([.unchanged(key, since: currentKV.modRevision)] + fence, success: [.delete(key: key)], failure: [.get(key: key)]) }
            if result.succeeded {
                // As the SQLite store: the deleted object carries the delete's revision.
                var deleted = try object(currentKV)
                deleted.metadata.revision = UInt64(max(result.revision, 0))
                return deleted
            }
            guard let now = result.kvs.first else { throw .notFound(kind: kind, name: name) }
            if now.modRevision == currentKV.modRevision && !fence.isEmpty { throw Self.fenced }
            if let expected { throw .conflict(kind: kind, name: name, expected: expected, stored: UInt64(max(now.modRevision, 0))) }
        }
        throw .storage("\(kind) \"\(name)\" kept changing while it was being deleted; retry")
    }

    /// What ``copy(_:)`` did with one object.
    public enum CopyOutcome: Sendable, Hashable {
        /// Not in etcd before: stored.
        case added
        /// Copied before and the same now: left alone.
        case unchanged
        /// Copied before, untouched in etcd since, changed in SQLite since: replaced.
        case updated
        /// Copied before, then changed or deleted in etcd (by a server): etcd's is kept.
        case changedInEtcd
        /// An object of that name but another uid (made in etcd, not copied): left alone.
        case different(uid: String?)
    }

    /// Copies an object from another store as it is — uid, creation time and generation kept —
    /// for `capstan store migrate`. Safe to repeat, even after servers have run on etcd: each
    /// copy also writes a marker (`/capstan/migration/objects/…`) in the same transaction, so a
    /// later run can tell an object nobody touched since (brought up to date from SQLite) from
    /// one a server changed or deleted since (etcd's is kept), and never overwrites an object
    /// made in etcd by other means.
    public func copy(_ object: AnyResource) async throws(StoreError) -> CopyOutcome {
        var stored = object
        stored.metadata.revision = nil
        let body = try encoded(stored)
        let key = key(object.kind, object.name)
        let marker = Array("/capstan/migration/objects/\(object.kind)/\(object.name)".utf8)
        let uid = Array((object.metadata.uid ?? "").utf8)
        let result = try await etcd {
            try await self.client.txn([.absent(key), .absent(marker)], success: [.put(key: key, value: body, lease: nil), .put(key: marker, value: uid, lease: nil)],
                                      failure: [.get(key: key), .get(key: marker)])
        }
        if result.succeeded { return .added }
        let currentKV = result.kvs.first { $0.key == key }
        let markerKV = result.kvs.first { $0.key == marker }
        guard let currentKV else { return .changedInEtcd }   // deleted in etcd since it was copied
        var current = try self.object(currentKV)
        guard current.metadata.uid == object.metadata.uid else { return .different(uid: current.metadata.uid) }
        guard let markerKV, markerKV.modRevision == currentKV.modRevision else { return .changedInEtcd }
        current.metadata.revision = nil
        if (try? ResourceStore.encode(current)) == (try? ResourceStore.encode(stored)) { return .unchanged }
        let replaced = try await etcd {
            try await self.client.txn([.unchanged(key, since: currentKV.modRevision), .unchanged(marker, since: markerKV.modRevision)],
                                      success: [.put(key: key, value: body, lease: nil), .put(key: marker, value: uid, lease: nil)])
        }
        return replaced.succeeded ? .updated : .changedInEtcd
    }

    /// A write refused by its fence: this server no longer leads.
    static let fenced = StoreError.storage("this server is no longer the leader: a newer term holds the leader key; the write was refused")

    // MARK: Watch

    /// Every committed change after `revision`, in order, with the revision of each (a delete
    /// carries the object as it was). Ends with ``EtcdError/compacted(_:)`` when etcd no longer
    /// holds that history: list again.
    /// - Parameter progress: told the revision of every event seen, those passed over too
    ///   (a value this server cannot read, the compactor's progress key), so a watch made again
    ///   resumes after them.
    /// - Parameter stored: told, before each event is yielded, the object's JSON as stored (the
    ///   form every server writes; no revision in it) — for watch lines made without encoding
    ///   the object again. Not for Secrets (stored sealed).
    public func events(after revision: UInt64, progress: (@Sendable (UInt64) -> Void)? = nil, stored: (@Sendable (UInt64, [UInt8]) -> Void)? = nil) -> AsyncThrowingStream<(ResourceEvent, UInt64), any Error> {
        let keyPrefix = Array(prefix.utf8)
        guard let start = Int64(exactly: revision), start < Int64.max else {
            return AsyncThrowingStream { $0.finish(throwing: EtcdError.badArgument("revision \(revision) is beyond any etcd revision")) }
        }
        let upstream = client.watch(keyPrefix, rangeEnd: EtcdClient.prefixEnd(keyPrefix), startRevision: start + 1, prevKV: true)
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    var last: Int64 = start
                    for try await batch in upstream {
                        for event in batch {
                            let revision = event.kv.modRevision
                            // Capstan writes one key per transaction. Several object keys at one
                            // revision is a write from outside (`etcdctl del --prefix …`): one
                            // revision cannot carry several events, so the watcher must list again.
                            if revision <= last {
                                throw StoreError.storage("several keys under \(self.prefix) changed in one etcd transaction (revision \(revision)), a write from outside Capstan: list again")
                            }
                            last = revision
                            defer { progress?(UInt64(max(revision, 0))) }
                            switch event.kind {
                            case .put:
                                let change: ResourceEvent.Change = event.kv.createRevision == event.kv.modRevision ? .added : .modified
                                // A value this server cannot read (another cipher key, the
                                // progress key) is passed over, not allowed to end every watch
                                // that meets it.
                                guard let object = try? self.object(event.kv) else { continue }
                                if object.kind != SecretSpec.kind { stored?(UInt64(max(revision, 0)), event.kv.value) }
                                continuation.yield((ResourceEvent(change, object), UInt64(max(revision, 0))))
                            case .delete:
                                // Without the object as it was the delete cannot be told: the
                                // watcher lists again.
                                guard var previous = event.previous else {
                                    throw StoreError.storage("etcd sent the delete of \(event.kv.keyString) without the object as it was: list again")
                                }
                                previous.modRevision = revision
                                guard let object = try? self.object(previous) else { continue }
                                if object.kind != SecretSpec.kind { stored?(UInt64(max(revision, 0)), previous.value) }
                                continuation.yield((ResourceEvent(.deleted, object), UInt64(max(revision, 0))))
                            }
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// A key under the prefix that holds no object: the leader rewrites it every compaction
    /// period, so every server's watch sees a revision at least that often and never falls
    /// behind the compaction point in a quiet cluster.
    var progressKey: [UInt8] { Array("\(prefix)~progress".utf8) }

    // MARK: Plumbing

    /// The stored form: the SQLite store's (sealed secrets, the size limit), without a revision.
    private func encoded(_ object: AnyResource) throws(StoreError) -> [UInt8] {
        do {
            return Array(try ResourceStore.encodeWithinLimit(object, cipher))
        } catch let error as StoreError {
            throw error
        } catch {
            throw .storage("cannot encode \(object.kind) \"\(object.name)\": \(error)")
        }
    }

    private func object(_ kv: EtcdClient.KeyValue) throws(StoreError) -> AnyResource {
        do {
            var object = try ResourceStore.decode(Data(kv.value), cipher)
            object.metadata.revision = UInt64(max(kv.modRevision, 0))
            return object
        } catch {
            throw .storage("\(kv.keyString) does not hold a Capstan object: \(error)")
        }
    }

    private func sameSpec(_ a: AnyResource, _ b: AnyResource) throws(StoreError) -> Bool {
        do {
            return try ResourceStore.specJSON(of: a) == ResourceStore.specJSON(of: b)
        } catch {
            throw .storage("cannot compare specs: \(error)")
        }
    }

    /// An etcd call, its failure as a store error (the API answers 500/503 for it).
    private func etcd<T: Sendable>(_ body: @Sendable () async throws -> T) async throws(StoreError) -> T {
        do {
            return try await body()
        } catch let error as EtcdError {
            if case .unavailable = error { throw .unavailable("\(error)") }
            throw .storage("\(error)")
        } catch {
            throw .storage("\(error)")
        }
    }
}
