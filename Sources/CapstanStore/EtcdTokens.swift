import CapstanCore
import CapstanEtcd
import Crypto
import Foundation
import Synchronization

/// API tokens in etcd (`/capstan/tokens/<id>`), for servers that share one etcd: a token made or
/// revoked through any server counts on every server. As in the SQLite store only a SHA-256 of
/// each secret is kept. Every server holds all records in memory (authentication answers without
/// a round trip) and follows the prefix with a watch, so a revocation reaches the other servers
/// in the time of one watch event.
public final class EtcdTokens: Sendable {
    public let client: EtcdClient
    public let prefix: String
    private let cache = Mutex<[String: TokenRecord]>([:])
    /// Ids whose key this server saw deleted (revoked), with the delete's revision: a token read
    /// from etcd on a cache miss is kept only if it was not revoked after that read.
    private let revoked = Mutex<[String: Int64]>([:])
    /// Ids just looked up in etcd and not found: asked again at most once a second each, so
    /// made-up tokens cannot turn every request into an etcd read.
    private let misses = Mutex<[String: ContinuousClock.Instant]>([:])

    public init(client: EtcdClient, prefix: String = "/capstan/tokens/") {
        self.client = client
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
    }

    /// The stored form: the record and the secret's hash (hex).
    struct Stored: Codable {
        var id: String
        var role: String
        var node: String?
        var description: String
        var created: Double
        var sha256: String

        init(_ record: TokenRecord) {
            id = record.id
            role = record.role
            node = record.node
            description = record.description
            created = record.created.secondsSinceEpoch
            sha256 = record.secretSHA256.map { String(format: "%02x", $0) }.joined()
        }

        var record: TokenRecord? {
            var hash: [UInt8] = []
            var text = Substring(sha256)
            while text.count >= 2 {
                guard let byte = UInt8(text.prefix(2), radix: 16) else { return nil }
                hash.append(byte)
                text = text.dropFirst(2)
            }
            guard hash.count == 32 else { return nil }
            return TokenRecord(id: id, role: role, node: node, description: description, created: Timestamp(secondsSinceEpoch: created), secretSHA256: hash)
        }
    }

    private func key(_ id: String) -> [UInt8] { Array("\(prefix)\(id)".utf8) }

    /// Reads every record; returns the revision to follow from.
    @discardableResult
    public func load() async throws(StoreError) -> Int64 {
        do {
            let (kvs, revision) = try await client.prefix(prefix)
            var loaded: [String: TokenRecord] = [:]
            for kv in kvs {
                if let record = try? JSONDecoder().decode(Stored.self, from: Data(kv.value)).record { loaded[record.id] = record }
            }
            cache.withLock { $0 = loaded }
            return revision
        } catch {
            throw .storage("cannot read the API tokens from etcd: \(error)")
        }
    }

    /// Keeps the records current until cancelled: a watch from `revision`, made again (after a
    /// fresh load) when it breaks.
    public func follow(from revision: Int64) async {
        var next = revision
        while !Task.isCancelled {
            do {
                for try await events in client.watch(Array(prefix.utf8), rangeEnd: EtcdClient.prefixEnd(Array(prefix.utf8)), startRevision: next + 1) {
                    cache.withLock { cache in
                        for event in events {
                            let id = String(event.kv.keyString.dropFirst(prefix.count))
                            switch event.kind {
                            case .put: cache[id] = try? JSONDecoder().decode(Stored.self, from: Data(event.kv.value)).record
                            case .delete:
                                cache[id] = nil
                                revoked.withLock { revoked in
                                    if revoked.count >= 100_000 { revoked.removeAll() }
                                    revoked[id] = event.kv.modRevision
                                }
                            }
                        }
                    }
                    if let last = events.last { next = max(next, last.kv.modRevision) }
                }
            } catch EtcdError.compacted {
                // The history is gone: read everything again (a token made here meanwhile is
                // missing from the cache only until the watch from the new read delivers it).
                if Task.isCancelled { return }
                if let reloaded = try? await load() { next = reloaded }
            } catch {
                // A broken or silent watch: made again from the last revision seen, nothing missed.
                if Task.isCancelled { return }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    public func create(role: String, node: String?, description: String) async throws(StoreError) -> (record: TokenRecord, token: String) {
        let id = ResourceStore.randomHex(bytes: 6)
        let secret = ResourceStore.randomHex(bytes: 32)
        let record = TokenRecord(id: id, role: role, node: node, description: description,
                                 created: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970), secretSHA256: Array(SHA256.hash(data: Data(secret.utf8))))
        try await put(record)
        return (record, "\(id).\(secret)")
    }

    /// Stores a new record.
    private func put(_ record: TokenRecord) async throws(StoreError) {
        do {
            let result = try await client.txn([.absent(key(record.id))], success: [.put(key: key(record.id), value: Array(try JSONEncoder().encode(Stored(record))), lease: nil)])
            guard result.succeeded else { throw StoreError.alreadyExists(kind: "Token", name: record.id) }
        } catch let error as StoreError {
            throw error
        } catch {
            throw .storage("cannot store the token in etcd: \(error)")
        }
        cache.withLock { $0[record.id] = record }
    }

    /// Copies a record as it is (a migration from SQLite keeps ids and hashes), with a marker
    /// (`/capstan/migration/tokens/<id>`) in the same transaction: false when the token is
    /// there already, or was copied before and revoked since (it stays revoked).
    public func copy(_ record: TokenRecord) async throws(StoreError) -> Bool {
        let key = key(record.id)
        let marker = Array("/capstan/migration/tokens/\(record.id)".utf8)
        do {
            let value = Array(try JSONEncoder().encode(Stored(record)))
            let result = try await client.txn([.absent(key), .absent(marker)], success: [.put(key: key, value: value, lease: nil), .put(key: marker, value: [], lease: nil)])
            guard result.succeeded else { return false }
        } catch {
            throw .storage("cannot store the token in etcd: \(error)")
        }
        cache.withLock { $0[record.id] = record }
        return true
    }

    public func all() -> [TokenRecord] {
        cache.withLock { Array($0.values) }.sorted { ($0.created, $0.id) < ($1.created, $1.id) }
    }

    public func revoke(id: String) async throws(StoreError) -> Bool {
        let deleted: Int64
        do {
            deleted = try await client.delete(key(id))
        } catch {
            throw .storage("cannot revoke the token in etcd: \(error)")
        }
        cache.withLock { _ = $0.removeValue(forKey: id) }
        return deleted > 0
    }

    /// The record of a presented token, from memory; nil when unknown.
    public func authenticate(_ token: String) -> TokenRecord? {
        TokenRecord.match(token) { id in cache.withLock { $0[id] } }
    }

    /// As ``authenticate(_:)``, but a token this server has not heard of yet — made through
    /// another server a moment ago, its watch event still on the way — is read from etcd
    /// before it is refused.
    public func authenticateReadingThrough(_ token: String) async -> TokenRecord? {
        if let known = authenticate(token) { return known }
        guard token.utf8.count <= 256, let dot = token.firstIndex(of: "."), dot > token.startIndex else { return nil }
        let id = String(token[..<dot])
        guard id.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }) else { return nil }
        let now = ContinuousClock.now
        let recentlyMissed = misses.withLock { misses in
            if let at = misses[id], now - at < .seconds(1) { return true }
            if misses.count >= 10_000 { misses.removeAll() }
            misses[id] = now
            return false
        }
        if recentlyMissed { return nil }
        guard let kv = try? await client.range(key(id)).kvs.first,
              let record = try? JSONDecoder().decode(Stored.self, from: Data(kv.value)).record else { return nil }
        let keep = revoked.withLock { ($0[id] ?? 0) < kv.modRevision }
        guard keep else { return nil }
        cache.withLock { $0[id] = record }
        misses.withLock { _ = $0.removeValue(forKey: id) }
        return authenticate(token)
    }
}
