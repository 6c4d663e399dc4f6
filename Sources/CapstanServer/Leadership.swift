import CapstanEtcd
import CapstanStore
import Foundation
import ServiceLifecycle
import Synchronization

/// Who leads among the servers sharing one etcd, as this server sees it — for `/metrics`,
/// `GET /v1/servers` and the fence of every controller write.
public final class LeadershipState: Sendable {
    public struct Snapshot: Sendable, Hashable, Codable {
        /// This server's name.
        public var server: String
        /// Whether this server leads now.
        public var leading: Bool
        /// The leader's name as last seen (nil while nobody leads).
        public var leader: String?
        /// The term this server leads (the etcd revision that wrote the leader key).
        public var term: Int64?
        /// Changes of this server's state (led ↔ followed) since it started.
        public var transitions: Int
        /// When the last one happened (seconds since 1970).
        public var lastTransition: Double
    }

    private let state: Mutex<(snapshot: Snapshot, term: LeaderElection.Term?)>

    init(server: String, leading: Bool) {
        state = Mutex((Snapshot(server: server, leading: leading, leader: leading ? server : nil, term: leading ? 1 : nil,
                                transitions: 0, lastTransition: Date().timeIntervalSince1970), nil))
    }

    public var snapshot: Snapshot { state.withLock { $0.snapshot } }

    /// The term this server leads, nil when it does not.
    var term: LeaderElection.Term? { state.withLock { $0.term } }

    func set(_ election: LeaderElection.State) {
        state.withLock { state in
            let wasLeading = state.snapshot.leading
            switch election {
            case .leading(let term):
                state.term = term
                state.snapshot.leading = true
                state.snapshot.leader = term.leader
                state.snapshot.term = term.revision
            case .following(let leader):
                state.term = nil
                state.snapshot.leading = false
                state.snapshot.leader = leader
                state.snapshot.term = nil
            }
            if wasLeading != state.snapshot.leading {
                state.snapshot.transitions += 1
                state.snapshot.lastTransition = Date().timeIntervalSince1970
            }
        }
    }
}

/// Runs the control loops (scheduler, controllers, compaction) only while this server leads:
/// campaigns through ``LeaderElection``; on winning, starts a fresh set of loops whose every
/// write carries the term's fence; on losing (or failing to renew), cancels them and waits for
/// them to end before campaigning on. A deposed leader that has not noticed yet cannot write:
/// etcd refuses its fenced transactions.
struct Leadership: ServiceLifecycle.Service {
    let election: LeaderElection
    let state: LeadershipState
    let informer: SharedInformer
    let writer: StoreWriter
    let cluster: EtcdCluster
    let compactionInterval: Duration
    let log: @Sendable (String) -> Void
    /// The loops of one term, given the term's fenced writer; each with the informer feed it took.
    let makeLoops: @Sendable (StoreWriter) -> [(service: any ServiceLifecycle.Service, feed: SharedInformer.Feed?)]

    /// What the campaign loop reacts to: a change of the election (of campaign `round`), or a
    /// loop of the term that ended on its own (it failed: the term is given up, so another
    /// server — or this one, with fresh loops — leads with everything running).
    private enum Signal: Sendable {
        case election(round: Int, LeaderElection.State)
        case loopEnded(round: Int, String)
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            let (signals, signal) = AsyncStream<Signal>.makeStream()
            var next = signals.makeAsyncIterator()
            var round = 0
            var current: (task: Task<Void, Never>, feeds: [SharedInformer.Feed])?
            func stopLoops() async {
                guard let running = current else { return }
                running.task.cancel()
                await running.task.value
                for feed in running.feeds { informer.remove(feed) }
                current = nil
            }
            while !Task.isCancelled {
                round += 1
                let thisRound = round
                let election = self.election
                let campaign = Task {
                    for await change in election.campaign() { signal.yield(.election(round: thisRound, change)) }
                }
                rounds: while let received = await next.next() {
                    switch received {
                    case .election(let from, let change):
                        guard from == thisRound else { continue }
                        // First the state: the fence of the old term's writes fails from this moment.
                        state.set(change)
                        await stopLoops()
                        guard case .leading(let term) = change else {
                            if case .following(let leader) = change { log("following \(leader ?? "(no leader right now)")") }
                            continue
                        }
                        log("leading, term \(term.revision)")
                        current = startLoops(term, round: thisRound, signal: signal)
                    case .loopEnded(let from, let why):
                        guard from == thisRound, current != nil else { continue }
                        log("\(why): giving up the lead so every loop runs again")
                        state.set(.following(nil))
                        await stopLoops()
                        break rounds
                    }
                }
                // Resign (cancelling the campaign revokes its lease) and campaign afresh.
                campaign.cancel()
                await campaign.value
                if Task.isCancelled { break }
                try? await Task.sleep(for: .milliseconds(200))
            }
            await stopLoops()
            signal.finish()
        }
    }

    /// The loops of one term, every write fenced on it.
    private func startLoops(_ term: LeaderElection.Term, round: Int, signal: AsyncStream<Signal>.Continuation) -> (task: Task<Void, Never>, feeds: [SharedInformer.Feed]) {
        let state = self.state
        let election = self.election
        // Every write of this term's loops holds only while the leader key is still this term's.
        let fenced = writer.fenced { state.term == term ? [election.fence(term)] : nil }
        let loops = makeLoops(fenced)
        let cluster = self.cluster
        let compactionInterval = self.compactionInterval
        let task = Task {
            await withTaskGroup(of: Void.self) { group in
                for loop in loops {
                    group.addTask {
                        var why = "\(type(of: loop.service)) ended"
                        do {
                            try await loop.service.run()
                        } catch {
                            why = "\(type(of: loop.service)) failed: \(error)"
                        }
                        if !Task.isCancelled { signal.yield(.loopEnded(round: round, why)) }
                    }
                }
                group.addTask { await cluster.compactPeriodically(every: compactionInterval) }
                await group.waitForAll()
            }
        }
        return (task, loops.compactMap(\.feed))
    }
}

/// Feeds this server's bus from etcd's watch (see ``EtcdCluster/run()``).
struct EtcdWatchPump: ServiceLifecycle.Service {
    let cluster: EtcdCluster
    func run() async throws {
        try await cancelWhenGracefulShutdown { try await cluster.run() }
    }
}

/// Each server's entry in etcd (`/capstan/servers/<name>`, held by a lease of its own), so
/// `capstan get servers` lists the live ones with their addresses.
struct ServerRegistry: ServiceLifecycle.Service {
    let client: EtcdClient
    let name: String
    let address: @Sendable () async -> String?
    static let prefix = "/capstan/servers/"

    struct Entry: Codable, Sendable {
        var name: String
        var address: String
        var started: Double
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            guard let address = await address() else { return }
            let entry = Entry(name: name, address: address, started: Date().timeIntervalSince1970)
            let key = Array((Self.prefix + name).utf8)
            let value = Array((try? JSONEncoder().encode(entry)) ?? Data())
            var lease: Int64?
            while !Task.isCancelled {
                do {
                    let granted = try await client.grantLease(ttl: 10)
                    lease = granted
                    try await client.put(key, value, lease: granted)
                    while !Task.isCancelled {
                        try await Task.sleep(for: .seconds(3))
                        guard try await client.keepAlive(lease: granted) > 0 else { break }
                    }
                } catch {
                    if Task.isCancelled { break }
                    try? await Task.sleep(for: .seconds(1))
                }
            }
            // Stopping: gone from the list at once (in a task of its own: this one is cancelled).
            if let lease { await Task { try? await client.revoke(lease: lease) }.value }
        }
    }

    static func all(_ client: EtcdClient) async throws -> [Entry] {
        try await client.prefix(prefix).kvs.compactMap { try? JSONDecoder().decode(Entry.self, from: Data($0.value)) }
    }
}
