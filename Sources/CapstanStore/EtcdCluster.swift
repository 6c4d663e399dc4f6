import CapstanCore
import CapstanEtcd
import Foundation
import Synchronization

/// A server's view of a cluster kept in etcd (`capstan server --store etcd://…`): the objects,
/// the API tokens, and this server's event bus fed by etcd's watch — so every server sends its
/// watchers and its controllers every committed write, whichever server made it, in etcd's
/// revision order.
public final class EtcdCluster: Sendable {
    public let client: EtcdClient
    public let objects: EtcdObjectStore
    public let tokens: EtcdTokens
    public let bus: EventBus
    let channel: BusChannel<ResourceEvent>
    /// The revision the bus starts after: etcd's when this server connected.
    public let startRevision: UInt64
    private let tokensRevision: Int64
    /// The stored JSON of the latest writes, by revision: this server's own (put when etcd
    /// acknowledged them) and every server's (put as the watch brings them).
    public var storedForms: StoredForms { objects.storedForms }

    /// Connects (reading etcd's revision and the tokens): fails when no member answers.
    public init(client: EtcdClient, cipher: SecretCipher, bus: EventBus) async throws(StoreError) {
        self.client = client
        self.bus = bus
        objects = EtcdObjectStore(client: client, cipher: cipher)
        tokens = EtcdTokens(client: client)
        try await Self.checkSecretsKey(client, cipher)
        tokensRevision = try await tokens.load()
        startRevision = UInt64(max(tokensRevision, 0))
        channel = bus.channel(.resources, startingRevision: startRevision)
    }

    /// Every server of a cluster must seal Secrets with the same key, or they cannot read each
    /// other's. The first server stores a value sealed with its key (`/capstan/secrets-check`);
    /// a server whose `secrets.keys` cannot open it refuses to start, saying what to copy.
    static func checkSecretsKey(_ client: EtcdClient, _ cipher: SecretCipher) async throws(StoreError) {
        let key = Array("/capstan/secrets-check".utf8)
        let plain = Data("capstan secrets key check".utf8)
        do {
            let sealed = Array(try cipher.seal(plain).utf8)
            let result = try await client.txn([.absent(key)], success: [.put(key: key, value: sealed, lease: nil)], failure: [.get(key: key)])
            guard !result.succeeded, let stored = result.kvs.first else { return }
            guard (try? cipher.open(String(decoding: stored.value, as: UTF8.self))) == plain else {
                throw StoreError.storage("\(cipher.path) does not hold the key this cluster's Secrets are sealed with: copy secrets.keys from the data directory of a server of this cluster (the first one created it) into this server's data directory, then start it again")
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw .storage("cannot check the secrets key against etcd: \(error)")
        }
    }

    /// etcd's revision now (a write of any server's may be newer than this server's bus).
    public func currentRevision() async throws(StoreError) -> UInt64 {
        do {
            return UInt64(max(try await client.range(Array(objects.prefix.utf8), limit: 1).revision, 0))
        } catch {
            throw .storage("\(error)")
        }
    }

    /// Feeds the bus and follows the tokens until cancelled. A broken watch is made again from
    /// the last revision delivered (nothing is missed, nothing repeated). If etcd no longer
    /// holds that history — this server was cut off from etcd for longer than the compaction
    /// keeps — it throws: the server stops (and its supervisor starts it again with a fresh
    /// list) rather than serve watches with a hole in them.
    public func run() async throws {
        let tokens = self.tokens
        let tokensRevision = self.tokensRevision
        let follower = Task { await tokens.follow(from: tokensRevision) }
        defer { follower.cancel() }
        var last = startRevision
        let seen = ProgressBox(startRevision)
        while !Task.isCancelled {
            do {
                let forms = objects.storedForms
                for try await (event, revision) in objects.events(after: last, progress: { seen.advance($0) }, stored: { forms.put($0, $1) }) {
                    channel.publish(event, revision: revision)
                }
                last = max(last, seen.value)
            } catch EtcdError.compacted(let compacted) {
                last = max(last, seen.value)
                throw StoreError.storage("etcd compacted its history to revision \(compacted) while this server was at \(last): restart the server to list again")
            } catch let error as StoreError {
                // A change the bus cannot carry (see EtcdObjectStore.events): a hole no
                // resume can fill.
                throw StoreError.storage("\(error.description) — restart the server to list again")
            } catch {
                last = max(last, seen.value)
                if Task.isCancelled { return }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Compacts etcd's history every `period`, to the revision it had one period before (as
    /// kube-apiserver does): watches may resume from any revision of the last period. Run by
    /// the leader only (a second compactor would be harmless, only wasteful).
    public func compactPeriodically(every period: Duration) async {
        var previous: Int64?
        while !Task.isCancelled {
            try? await Task.sleep(for: period)
            if Task.isCancelled { return }
            // A write under the objects' prefix first: every server's watch sees this revision,
            // so none is left behind the compaction point in a quiet cluster.
            guard let now = try? await client.put(objects.progressKey, Array("compaction".utf8)) else { continue }
            if let previous, previous > 0 {
                do {
                    try await client.compact(Int64(clamping: previous))
                } catch {
                    // Compacted already (by an earlier leader) is no failure; others are retried next period.
                }
            }
            previous = now
        }
    }

    /// Claims an address for `owner` across every server (`/capstan/addresses/<key>`); false when
    /// another owner holds it. A claim whose owner does not hold the address (`holds`, from
    /// the cache) and that is older than a minute is stale — its object was deleted, or its
    /// create failed — and is taken over.
    public func reserve(_ address: String, owner: String, holds: @Sendable (String) -> Bool) async throws(StoreError) -> Bool {
        struct Claim: Codable { var owner: String; var at: Double }
        let key = Array("/capstan/addresses/\(address)".utf8)
        do {
            let value = Array(try JSONEncoder().encode(Claim(owner: owner, at: Date().timeIntervalSince1970)))
            let result = try await client.txn([.absent(key)], success: [.put(key: key, value: value, lease: nil)], failure: [.get(key: key)])
            if result.succeeded { return true }
            guard let current = result.kvs.first else { return false }
            if let claim = try? JSONDecoder().decode(Claim.self, from: Data(current.value)) {
                if claim.owner == owner { return true }
                if holds(claim.owner) || Date().timeIntervalSince1970 - claim.at < 60 { return false }
            }
            return try await client.txn([.unchanged(key, since: current.modRevision)], success: [.put(key: key, value: value, lease: nil)]).succeeded
        } catch {
            throw .storage("cannot reserve \(address) in etcd: \(error)")
        }
    }

    /// Every object of `kinds`, read at one revision, and that revision.
    public func snapshot(of kinds: [String]) async throws(StoreError) -> (events: [ResourceEvent], revision: UInt64) {
        var events: [ResourceEvent] = []
        var revision: UInt64 = 0
        for kind in kinds {
            let (items, at) = try await objects.list(kind: kind, revision: revision)
            if revision == 0 { revision = at }
            events += items.map { ResourceEvent(.added, $0) }
        }
        return (events, revision)
    }
}

/// The newest revision a watch has seen.
final class ProgressBox: Sendable {
    private let revision: Mutex<UInt64>
    init(_ start: UInt64) { revision = Mutex(start) }
    func advance(_ to: UInt64) { revision.withLock { $0 = max($0, to) } }
    var value: UInt64 { revision.withLock { $0 } }
}
