import Foundation

/// One leader among several servers, elected through etcd like Kubernetes' leader election:
/// the leader holds a key (`/capstan/leader`) written with a lease it keeps renewing; when it
/// stops renewing (killed, cut off), etcd deletes the key at the lease's expiry and a waiting
/// member takes it — no consensus of Capstan's own.
///
/// A **term** is identified by the revision that wrote the key. A leader's writes carry
/// ``fence(_:)`` in their transaction: once the key is gone or rewritten by a newer leader the
/// comparison fails, so a deposed leader that has not noticed yet cannot write.
public final class LeaderElection: Sendable {
    public struct Term: Sendable, Hashable {
        /// Who leads (its identity).
        public var leader: String
        /// The revision that wrote the leader key: the term's number and its fence.
        public var revision: Int64
        public var lease: Int64
    }

    public enum State: Sendable, Hashable {
        /// This member leads.
        case leading(Term)
        /// Another member leads (its identity), or none does right now (nil).
        case following(String?)
    }

    public let client: EtcdClient
    public let key: [UInt8]
    public let identity: String
    /// Seconds a leader that stopped renewing keeps the key.
    public let ttl: Int64

    /// Whether cancelling a leader's campaign revokes its lease (resigns at once). False
    /// behaves as a crash: the key stays until the lease expires (for tests of failover).
    public let resignsOnCancel: Bool

    /// The key the servers of one cluster campaign for.
    public static let defaultKey = "/capstan/leader"

    public init(client: EtcdClient, key: String = LeaderElection.defaultKey, identity: String, ttl: Int64 = 2, resignsOnCancel: Bool = true) {
        self.client = client
        self.key = Array(key.utf8)
        self.identity = identity
        self.ttl = max(1, min(ttl, 60))
        self.resignsOnCancel = resignsOnCancel
    }

    /// The comparison that holds only while `term` is current: put it in every leader write.
    public func fence(_ term: Term) -> EtcdClient.Compare {
        .unchanged(key, since: term.revision)
    }

    /// Campaigns until cancelled, reporting each change of state: `.leading` when this member
    /// wins, `.following` while another leads (waiting on a watch of the key, not a timer).
    /// A leader renews its lease every quarter of the TTL; when no renewal succeeded for ¾ of it, it
    /// reports `.following(nil)` — it must stop acting — and campaigns again. Cancelling a
    /// leader resigns (revokes its lease), so the next one need not wait for the expiry.
    public func campaign() -> AsyncStream<State> {
        AsyncStream { continuation in
            let task = Task {
                var last: State?
                func report(_ state: State) {
                    if state != last { continuation.yield(state); last = state }
                }
                while !Task.isCancelled {
                    do {
                        let lease = try await client.grantLease(ttl: ttl)
                        let attempt = try await client.txn([.absent(key)], success: [.put(key: key, value: Array(identity.utf8), lease: lease)], failure: [.get(key: key)])
                        if attempt.succeeded {
                            let term = Term(leader: identity, revision: attempt.revision, lease: lease)
                            report(.leading(term))
                            await hold(term)
                            if Task.isCancelled {
                                // In a task of its own: this one is cancelled, and would cancel the call.
                                if resignsOnCancel { await Task { try? await client.revoke(lease: lease) }.value }
                                break
                            }
                            // Stepped down without being cancelled: say so at once, then give the
                            // lease back (best effort, in a task of its own: cut off, it may take a
                            // while), so nobody waits out its TTL.
                            report(.following(nil))
                            await Task { try? await client.revoke(lease: term.lease) }.value
                        } else {
                            try? await client.revoke(lease: lease)
                            let holder = attempt.kvs.first
                            report(.following(holder.map { String(decoding: $0.value, as: UTF8.self) }))
                            // From the transaction's revision, not the holder's: the holder's
                            // write may be long compacted away, the transaction's is current.
                            if holder != nil { try await waitForRelease(after: attempt.revision) }
                        }
                    } catch {
                        if Task.isCancelled { break }
                        // Only a lapse of our own leadership is news; a broken wait is retried
                        // without telling the world nobody leads.
                        if case .leading? = last { report(.following(nil)) }
                        try? await Task.sleep(for: .milliseconds(Int(ttl) * 1000 / 3))
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Leads until the lease may have lapsed, the key changed, or the task is cancelled. The
    /// lease is renewed every quarter of the TTL, each renewal allowed half the TTL; leading
    /// ends once no renewal *sent* in the last three quarters of the TTL succeeded — before etcd
    /// can expire the lease and let another member in (a loaded machine's slow answer is not
    /// taken for a loss). A watch of the key ends it at once when the key is deleted or rewritten
    /// while the lease still lives.
    private func hold(_ term: Term) async {
        let quarter = Duration.milliseconds(Int(ttl) * 1000 / 4)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                var lastSent = ContinuousClock.now
                while !Task.isCancelled {
                    try? await Task.sleep(for: quarter)
                    if Task.isCancelled { return }
                    let sent = ContinuousClock.now
                    // Half the TTL at most, and never past the moment leading must end.
                    let left = lastSent + quarter * 3 - sent
                    let allowed = min(quarter * 2, max(left, .milliseconds(50)))
                    do {
                        guard try await self.client.keepAlive(lease: term.lease, timeout: .nanoseconds(Int64(allowed.components.seconds) * 1_000_000_000 + allowed.components.attoseconds / 1_000_000_000)) > 0 else { return }
                        lastSent = sent
                    } catch {
                        if ContinuousClock.now - lastSent >= quarter * 3 { return }
                    }
                }
            }
            group.addTask {
                // Any change of the key after this term's write ends the term. A watch that
                // breaks is made again from the last revision known to hold the term; if etcd
                // compacted that history, the key is read: still this term's, watch on from the
                // read; else the term is over.
                var from = term.revision + 1
                while !Task.isCancelled {
                    do {
                        for try await events in self.client.watch(self.key, startRevision: from, idleTimeout: .seconds(max(2, self.ttl))) where !events.isEmpty { return }
                    } catch EtcdError.compacted {
                        guard let (kvs, revision) = try? await self.client.range(self.key) else {
                            try? await Task.sleep(for: quarter)
                            continue
                        }
                        guard kvs.first?.modRevision == term.revision else { return }
                        from = revision + 1
                    } catch {
                        try? await Task.sleep(for: quarter)
                    }
                }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Returns once the leader key is deleted (its lease expired or was revoked).
    private func waitForRelease(after revision: Int64) async throws {
        // A silent watch (its member cut off) is given up after the TTL, and the campaign goes on
        // through a member that answers.
        for try await events in client.watch(key, startRevision: revision + 1, idleTimeout: .seconds(max(2, ttl))) {
            if events.contains(where: { $0.kind == .delete }) { return }
        }
    }
}
