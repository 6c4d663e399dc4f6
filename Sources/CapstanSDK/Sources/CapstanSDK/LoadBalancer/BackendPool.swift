import Synchronization

/// The backend bookkeeping every load-balancer algorithm needs: services, backend states,
/// draining, connection counts. An algorithm supplies only the choice among candidates.
///
/// Thread-safe; every method takes one short lock.
public final class BackendPool: Sendable {
    /// One backend as an algorithm sees it when choosing.
    public struct Candidate: Sendable {
        public let backend: Backend
        public let activeConnections: Int
        public let totalConnections: Int
    }

    struct Entry {
        var backend: Backend
        var draining: Bool
        var active: Int
        var total: Int
    }

    struct ServiceState {
        var entries: [Entry] = []
        /// Picks made so far; algorithms use it to rotate.
        var picks: UInt64 = 0
    }

    private let services = Mutex<[String: ServiceState]>([:])

    public init() {}

    /// Applies a service's new backend list: new ones join, changed ones update, missing ones
    /// drain (and disappear once they have no open connection).
    public func program(_ request: ProgramServiceRequest) {
        services.withLock { services in
            var state = services[request.service] ?? ServiceState()
            let wanted = Dictionary(request.backends.map { ($0.id, $0) }, uniquingKeysWith: { _, last in last })
            for index in state.entries.indices {
                if let backend = wanted[state.entries[index].backend.id] {
                    state.entries[index].backend = backend
                    state.entries[index].draining = false
                } else {
                    state.entries[index].draining = true
                }
            }
            for backend in request.backends where !state.entries.contains(where: { $0.backend.id == backend.id }) {
                state.entries.append(Entry(backend: backend, draining: false, active: 0, total: 0))
            }
            state.entries.removeAll { $0.draining && $0.active == 0 }
            services[request.service] = state
        }
    }

    /// Drains every backend of a service; the service disappears once they are idle.
    public func remove(service: String) {
        services.withLock { services in
            guard var state = services[service] else { return }
            for index in state.entries.indices { state.entries[index].draining = true }
            state.entries.removeAll { $0.active == 0 }
            services[service] = state.entries.isEmpty ? nil : state
        }
    }

    /// Picks among the ready, non-draining backends of a service.
    /// - Parameter choose: given the candidates (never empty) and the number of picks made so
    ///   far, returns the index of the chosen candidate.
    public func pick(service: String, choose: ([Candidate], UInt64) -> Int) -> PickedBackend? {
        services.withLock { services in
            guard var state = services[service] else { return nil }
            var candidates: [Candidate] = []
            var positions: [Int] = []
            for (position, entry) in state.entries.enumerated() where entry.backend.ready && !entry.draining {
                candidates.append(Candidate(backend: entry.backend, activeConnections: entry.active, totalConnections: entry.total))
                positions.append(position)
            }
            guard !candidates.isEmpty else { return nil }
            let chosen = choose(candidates, state.picks)
            precondition(candidates.indices.contains(chosen), "load balancer chose candidate \(chosen) of \(candidates.count)")
            let position = positions[chosen]
            state.picks &+= 1
            state.entries[position].active += 1
            state.entries[position].total += 1
            let picked = PickedBackend(service: service, backend: state.entries[position].backend)
            services[service] = state
            return picked
        }
    }

    /// Ends a connection; a draining backend with none left disappears.
    public func release(_ picked: PickedBackend) {
        services.withLock { services in
            guard var state = services[picked.service],
                  let index = state.entries.firstIndex(where: { $0.backend.id == picked.backend.id }) else { return }
            state.entries[index].active = max(0, state.entries[index].active - 1)
            if state.entries[index].draining && state.entries[index].active == 0 {
                state.entries.remove(at: index)
            }
            services[picked.service] = state
        }
    }

    /// Per-backend counters and states.
    public func stats(service: String) -> [BackendStats] {
        services.withLock { services in
            (services[service]?.entries ?? []).map { entry in
                BackendStats(
                    backend: entry.backend,
                    state: entry.draining ? .draining : (entry.backend.ready ? .active : .notReady),
                    activeConnections: entry.active,
                    totalConnections: entry.total)
            }
        }
    }
}
