import CapstanCore
import CapstanEtcd
import Dispatch
import Foundation
import Synchronization

/// Where a server keeps the cluster.
public enum StoreBackend: Sendable {
    /// One SQLite file in the data directory (`capstan dev`, a single server).
    case sqlite(ResourceStore)
    /// etcd, shared by any number of servers (`capstan server --store etcd://…`).
    case etcd(EtcdCluster)
}

/// The server's one way to the store, whichever backend holds it: every read and write of the
/// API and the controllers goes through it.
///
/// With SQLite it is a group commit: writes from many concurrent callers are gathered while the
/// previous transaction commits and go to SQLite together, in one transaction and one fsync.
/// Each caller still gets its own result, only after the commit that holds its write, so an
/// acknowledged write is durable exactly as with a lone ``ResourceStore/write(_:)``. Callers
/// never block a Swift concurrency thread on disk I/O: reads and transactions run on queues.
///
/// With etcd each write is one etcd transaction (a compare-and-swap on the object's revision),
/// acknowledged once etcd's quorum has it; a writer made by ``fenced(_:)`` adds the leader's
/// fence to every write, so a deposed leader's controllers cannot write.
public final class StoreWriter: Sendable {
    public let backend: StoreBackend
    public let bus: EventBus
    /// The most writes one transaction takes.
    public let maxBatch: Int
    /// etcd: comparisons each write also carries; nil from the closure refuses the write.
    private let fence: (@Sendable () -> [EtcdClient.Compare]?)?
    private typealias Waiter = @Sendable (Result<AnyResource, StoreError>) -> Void
    private struct State {
        var pending: [(StoreOperation, Waiter)] = []
        var draining = false
    }
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "capstan.store.writer")

    public init(store: ResourceStore, maxBatch: Int = 512) {
        backend = .sqlite(store)
        bus = store.bus
        self.maxBatch = maxBatch
        fence = nil
    }

    public init(etcd: EtcdCluster, fence: (@Sendable () -> [EtcdClient.Compare]?)? = nil) {
        backend = .etcd(etcd)
        bus = etcd.bus
        maxBatch = 512
        self.fence = fence
    }

    /// The JSON of the latest writes as the backend stored them (see ``StoredForms``).
    public var storedForms: StoredForms {
        switch backend {
        case .sqlite(let store): store.storedForms
        case .etcd(let cluster): cluster.storedForms
        }
    }

    /// The SQLite store, when that is the backend.
    public var store: ResourceStore? {
        if case .sqlite(let store) = backend { return store }
        return nil
    }

    /// A writer whose every write holds only while `fence` does (etcd: the leader key is still
    /// this term's). `fence` answers nil once this server no longer leads: writes then fail at
    /// once. With SQLite (one server, always the leader) it is this writer.
    public func fenced(_ fence: @escaping @Sendable () -> [EtcdClient.Compare]?) -> StoreWriter {
        guard case .etcd(let cluster) = backend else { return self }
        return StoreWriter(etcd: cluster, fence: fence)
    }

    /// A write refused because this server does not lead.
    public static let notLeader = StoreError.storage("this server is not the leader: only the leader's controllers write")

    private func currentFence() throws(StoreError) -> [EtcdClient.Compare] {
        guard let fence else { return [] }
        guard let compares = fence() else { throw Self.notLeader }
        return compares
    }

    /// Applies one write; returns after it is committed.
    public func perform(_ operation: StoreOperation) async throws(StoreError) -> AnyResource {
        if case .etcd(let cluster) = backend {
            let fence = try currentFence()
            switch operation {
            case .create(let object): return try await cluster.objects.create(object, fence: fence)
            case .update(let object): return try await cluster.objects.update(object, fence: fence)
            case .delete(let kind, let name, let revision): return try await cluster.objects.delete(kind: kind, name: name, revision: revision, fence: fence)
            }
        }
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<AnyResource, StoreError>, Never>) in
            let start = state.withLock { state in
                state.pending.append((operation, { continuation.resume(returning: $0) }))
                if state.draining { return false }
                state.draining = true
                return true
            }
            if start { queue.async { self.drain() } }
        }
        return try result.get()
    }

    /// Applies many writes, queued together (so they fill transactions of ``maxBatch`` instead
    /// of trickling in one task at a time); each result in order, after its commit.
    public func performAll(_ operations: [StoreOperation]) async -> [Result<AnyResource, StoreError>] {
        guard !operations.isEmpty else { return [] }
        if case .etcd = backend {
            // Up to 32 transactions in flight, results in order.
            var results = [Result<AnyResource, StoreError>?](repeating: nil, count: operations.count)
            await withTaskGroup(of: (Int, Result<AnyResource, StoreError>).self) { group in
                var next = 0
                func add() {
                    let index = next
                    let operation = operations[index]
                    group.addTask {
                        do throws(StoreError) {
                            return (index, .success(try await self.perform(operation)))
                        } catch {
                            return (index, .failure(error))
                        }
                    }
                    next += 1
                }
                while next < min(32, operations.count) { add() }
                while let (index, result) = await group.next() {
                    results[index] = result
                    if next < operations.count { add() }
                }
            }
            return results.map { $0 ?? .failure(.storage("the write was not performed")) }
        }
        return await withCheckedContinuation { (continuation: CheckedContinuation<[Result<AnyResource, StoreError>], Never>) in
            let collected = Collected(count: operations.count, continuation: continuation)
            let start = state.withLock { state in
                for (index, operation) in operations.enumerated() {
                    state.pending.append((operation, { collected.set(index, $0) }))
                }
                if state.draining { return false }
                state.draining = true
                return true
            }
            if start { queue.async { self.drain() } }
        }
    }

    /// The results of a ``performAll(_:)``, resumed once all are in.
    private final class Collected: @unchecked Sendable {
        private var results: [Result<AnyResource, StoreError>?]
        private var left: Int
        private let continuation: CheckedContinuation<[Result<AnyResource, StoreError>], Never>
        private let lock = Mutex(())

        init(count: Int, continuation: CheckedContinuation<[Result<AnyResource, StoreError>], Never>) {
            results = Array(repeating: nil, count: count)
            left = count
            self.continuation = continuation
        }

        func set(_ index: Int, _ result: Result<AnyResource, StoreError>) {
            let done: [Result<AnyResource, StoreError>]? = lock.withLock { _ in
                results[index] = result
                left -= 1
                return left == 0 ? results.map { $0 ?? .failure(.storage("the write was not performed")) } : nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    public func create(_ object: AnyResource) async throws(StoreError) -> AnyResource { try await perform(.create(object)) }
    public func update(_ object: AnyResource) async throws(StoreError) -> AnyResource { try await perform(.update(object)) }
    public func delete(kind: String, name: String, revision: UInt64? = nil) async throws(StoreError) -> AnyResource {
        try await perform(.delete(kind: kind, name: name, revision: revision))
    }

    /// Runs `body` on the SQLite store off the Swift concurrency threads, as writes are.
    private func onQueue<T: Sendable>(_ store: ResourceStore, _ body: @escaping @Sendable (ResourceStore) throws(StoreError) -> T) async throws(StoreError) -> T {
        let result: Result<T, StoreError> = await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: Result { () throws(StoreError) -> T in try body(store) })
            }
        }
        return try result.get()
    }

    // MARK: Reads

    /// One object, or nil.
    public func get(kind: String, name: String) async throws(StoreError) -> AnyResource? {
        switch backend {
        case .sqlite(let store): try await onQueue(store) { store throws(StoreError) in try store.get(kind: kind, name: name) }
        case .etcd(let cluster): try await cluster.objects.get(kind: kind, name: name)
        }
    }

    /// Every object of a kind and the revision the list is consistent at (watch from it).
    public func list(kind: String) async throws(StoreError) -> (items: [AnyResource], revision: UInt64) {
        switch backend {
        case .sqlite(let store): try await onQueue(store) { store throws(StoreError) in try store.list(kind: kind) }
        case .etcd(let cluster): try await cluster.objects.list(kind: kind)
        }
    }

    /// How many objects of a kind there are; with `withoutField` (a JSON path such as
    /// `$.metadata.owner`), only those where that field is absent.
    public func count(kind: String, withoutField field: String? = nil) async throws(StoreError) -> Int {
        switch backend {
        case .sqlite(let store):
            return try await onQueue(store) { store throws(StoreError) in try store.count(kind: kind, withoutField: field) }
        case .etcd(let cluster):
            let items = try await cluster.objects.list(kind: kind).items
            guard let field else { return items.count }
            return items.count { JSONPath.value(field, in: $0) == nil }
        }
    }

    /// The sum of a numeric field (a JSON path such as `$.spec.replicas`) over the objects of a
    /// kind, leaving out the one named `excluding`.
    public func sum(kind: String, field: String, excluding name: String) async throws(StoreError) -> Int64 {
        switch backend {
        case .sqlite(let store):
            return try await onQueue(store) { store throws(StoreError) in try store.sum(kind: kind, field: field, excluding: name) }
        case .etcd(let cluster):
            var total: Int64 = 0
            for object in try await cluster.objects.list(kind: kind).items where object.name != name {
                if let number = JSONPath.value(field, in: object) as? NSNumber { total = total.addingReportingOverflow(number.int64Value).partialValue }
            }
            return total
        }
    }

    /// The store's newest revision.
    public func revision() async throws(StoreError) -> UInt64 {
        switch backend {
        case .sqlite(let store): try store.revision
        case .etcd(let cluster): try await cluster.currentRevision()
        }
    }

    /// Every object of `kinds` as an `added` event, read at one revision, and that revision.
    public func snapshot(of kinds: [String]) async throws(StoreError) -> (events: [ResourceEvent], revision: UInt64) {
        switch backend {
        case .sqlite(let store):
            return try await onQueue(store) { store throws(StoreError) in
                // Read in one SQLite read transaction would be tidier; a list per kind is
                // consistent enough here: the caller subscribed before, and replays what is newer.
                let revision = try store.revision
                var events: [ResourceEvent] = []
                for kind in kinds { events += try store.list(kind: kind).items.map { ResourceEvent(.added, $0) } }
                return (events, revision)
            }
        case .etcd(let cluster):
            return try await cluster.snapshot(of: kinds)
        }
    }

    // MARK: Tokens

    public func tokens() async throws(StoreError) -> [TokenRecord] {
        switch backend {
        case .sqlite(let store): try await onQueue(store) { store throws(StoreError) in try store.tokens() }
        case .etcd(let cluster): cluster.tokens.all()
        }
    }

    public func createToken(role: String, node: String? = nil, description: String = "") async throws(StoreError) -> (record: TokenRecord, token: String) {
        switch backend {
        case .sqlite(let store): try await onQueue(store) { store throws(StoreError) in try store.createToken(role: role, node: node, description: description) }
        case .etcd(let cluster): try await cluster.tokens.create(role: role, node: node, description: description)
        }
    }

    public func revokeToken(id: String) async throws(StoreError) -> Bool {
        switch backend {
        case .sqlite(let store): try await onQueue(store) { store throws(StoreError) in try store.revokeToken(id: id) }
        case .etcd(let cluster): try await cluster.tokens.revoke(id: id)
        }
    }

    /// The record of a presented token, or nil (answered from memory).
    public func authenticate(_ token: String) -> TokenRecord? {
        switch backend {
        case .sqlite(let store): store.authenticate(token)
        case .etcd(let cluster): cluster.tokens.authenticate(token)
        }
    }

    /// As ``authenticate(_:)``; with etcd, a token not known here yet (made through another
    /// server a moment ago) is read from etcd before it is refused.
    public func authenticateRequest(_ token: String) async -> TokenRecord? {
        switch backend {
        case .sqlite(let store): store.authenticate(token)
        case .etcd(let cluster): await cluster.tokens.authenticateReadingThrough(token)
        }
    }

    /// On a clean shutdown.
    public func close() {
        if case .sqlite(let store) = backend { store.close() }
    }

    private func drain() {
        while true {
            let batch: [(StoreOperation, Waiter)] = state.withLock { state in
                if state.pending.isEmpty {
                    state.draining = false
                    return []
                }
                let count = min(state.pending.count, maxBatch)
                let batch = Array(state.pending.prefix(count))
                state.pending.removeFirst(count)
                return batch
            }
            if batch.isEmpty { return }
            guard case .sqlite(let store) = backend else { return }
            let results = store.write(batch.map(\.0))
            for ((_, waiter), result) in zip(batch, results) { waiter(result) }
        }
    }
}

/// A field of an object by a JSON path of keys (`$.metadata.owner`), for the few counts the API
/// makes over a kind (the SQLite store asks SQLite's `json_extract` the same).
enum JSONPath {
    static func value(_ path: String, in object: AnyResource) -> Any? {
        guard path.hasPrefix("$."), let data = try? ResourceStore.encode(object),
              var current = try? JSONSerialization.jsonObject(with: data) else { return nil }
        for key in path.dropFirst(2).split(separator: ".") {
            guard let next = (current as? [String: Any])?[String(key)], !(next is NSNull) else { return nil }
            current = next
        }
        return current
    }
}
