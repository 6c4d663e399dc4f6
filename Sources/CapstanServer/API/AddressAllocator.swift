import CapstanCore
import Synchronization

/// Hands out the cluster's addresses when objects are written, as Kubernetes' API server does:
/// a Service's virtual IP from the service CIDR, a Node's pod subnet from the cluster CIDR. The
/// answer to the create already carries them.
///
/// What is taken is read from the shared informer's cache; addresses given out since (whose
/// writes the cache may not show yet) are remembered for a minute, so two creates in quick
/// succession never get the same one. With several servers (etcd), each new assignment is also
/// reserved in the store (``Reservations``): two servers creating at the same moment cannot
/// both take one address — the second tries the next free one.
final class AddressAllocator: Sendable {
    /// Claims an address cluster-wide (`svc/10.96.0.5`, `node/10.244.3.0/24`) for `owner`;
    /// false when another holds it.
    typealias Reservations = @Sendable (_ key: String, _ owner: String, _ holds: @escaping @Sendable (_ owner: String) -> Bool) async throws -> Bool
    /// The name of the object that holds an address (`svc/10.96.0.5`, `node/10.244.3.0/24`) in
    /// the cache, nil when none does: the shared informer's index (``keys(of:)``).
    typealias Owners = @Sendable (_ key: String) -> String?

    struct Settings: Sendable, Hashable {
        /// Every node's pod subnet lies in it.
        var clusterCIDR: IPv4Network
        /// Services' virtual IPs lie in it.
        var serviceCIDR: IPv4Network
        /// Prefix length of a node's subnet (24: 254 instances a node).
        var nodeMaskSize: Int
    }

    /// The address keys an object holds: `node/<podCIDR>` for a Node, `svc/<clusterIP>` for a
    /// Service — what ``Owners`` is asked about. One definition for the index and the scan.
    static func keys(of object: AnyResource) -> [String] {
        switch object {
        case .node(let node): node.spec.podCIDR.map { ["node/\($0)"] } ?? []
        case .service(let service): service.spec.clusterIP.map { ["svc/\(IPv4Address($0)?.description ?? $0)"] } ?? []
        default: []
        }
    }

    /// An index of `objects` by address key, for callers without an informer (tests).
    static func owners(of objects: [AnyResource]) -> [String: String] {
        var owners: [String: String] = [:]
        for object in objects { for key in keys(of: object) { owners[key] = object.name } }
        return owners
    }

    private struct State {
        /// Addresses given out in the last minute, whose writes the cache may not show yet.
        var recent: [String: (owner: String, at: ContinuousClock.Instant)] = [:]
        var pruned = ContinuousClock.now
        /// Where the next scan for a free subnet or address starts: just after the last one
        /// given, so handing out n in a row costs O(n), not O(n²) (Kubernetes' range allocators
        /// keep such a cursor too). Freed ones are found again when the scan wraps.
        var nextSubnet: UInt64 = 0
        var nextAddress: UInt64 = 1
    }

    let settings: Settings
    private let owners: Owners
    /// One assignment at a time: the scan for a free address and remembering the one given
    /// must not interleave with another's (two creates would get the same address).
    private let state = Mutex(State())

    private let reservations: Reservations?

    init(settings: Settings, reservations: Reservations? = nil, owners: @escaping Owners) {
        self.settings = settings
        self.owners = owners
        self.reservations = reservations
    }

    /// The service as it should be stored: its stored virtual IP kept (an apply that leaves
    /// it out must not move it), a free one given when it has none.
    /// - Throws: 422 naming `spec.clusterIP` when it asks for another address than it has,
    ///   one outside the CIDR or taken, or when the CIDR is full.
    func assign(_ service: CapstanCore.Service, stored: CapstanCore.Service?) async throws -> CapstanCore.Service {
        var excluded = Set<String>()
        // Bounded: each lost race excludes one more address.
        for _ in 0..<64 {
            let assigned = try state.withLock { state in try assignLocked(service, stored: stored, excluded: excluded, &state) }
            guard let reservations, stored?.spec.clusterIP == nil, let ip = assigned.spec.clusterIP else { return assigned }
            let name = service.metadata.name
            let owners = self.owners
            let key = "svc/\(IPv4Address(ip)?.description ?? ip)"
            if try await reservations(key, name, { owner in owners(key) == owner }) { return assigned }
            if service.spec.clusterIP != nil { throw invalid("spec.clusterIP", "\(ip) is already the address of another service") }
            excluded.insert(key)
        }
        throw invalid("spec.clusterIP", "no free address could be reserved (many services are being created at once); try again")
    }

    private func assignLocked(_ service: CapstanCore.Service, stored: CapstanCore.Service?, excluded: Set<String>, _ state: inout State) throws -> CapstanCore.Service {
        var service = service
        if let stored, let current = stored.spec.clusterIP {
            if let asked = service.spec.clusterIP, asked != current {
                throw invalid("spec.clusterIP", "is \(current) and cannot change; delete the service and create it again to move it")
            }
            service.spec.clusterIP = current
            return service
        }
        if service.spec.isHeadless { return service }
        let name = service.metadata.name
        prune(&state)
        if let asked = service.spec.clusterIP {
            guard let address = IPv4Address(asked) else { return service }  // validation names it
            guard settings.serviceCIDR.contains(address), address != settings.serviceCIDR.address else {
                throw invalid("spec.clusterIP", "\(asked) is not in the service CIDR \(settings.serviceCIDR); leave it out to get a free one")
            }
            if let owner = holder("svc/\(address)", except: name, state) { throw invalid("spec.clusterIP", "\(asked) is already the address of service \"\(owner)\"") }
            remember("svc/\(address)", owner: name, &state)
            return service
        }
        // The network's first address is never handed out; the last (broadcast) neither:
        // indexes 1 … size-2, scanned once from the cursor round.
        let count = settings.serviceCIDR.size >= 2 ? settings.serviceCIDR.size - 2 : 0
        for step in 0..<count {
            let index = 1 + (state.nextAddress &- 1 &+ step) % count
            guard let address = settings.serviceCIDR.address(at: index) else { break }
            let key = "svc/\(address)"
            if holder(key, except: name, state) == nil && !excluded.contains(key) {
                service.spec.clusterIP = address.description
                remember(key, owner: name, &state)
                state.nextAddress = index + 1 > count ? 1 : index + 1
                return service
            }
        }
        throw invalid("spec.clusterIP", "the service CIDR \(settings.serviceCIDR) has no free address left; delete unused services or widen --service-cidr")
    }

    /// The node as it should be stored: its pod subnet kept; one given when it has none. A
    /// full cluster CIDR leaves it without one (its network plugin then says why on attach).
    func assign(_ node: Node, stored: Node?) async throws -> Node {
        var excluded = Set<String>()
        for _ in 0..<64 {
            let assigned = state.withLock { state in assignLocked(node, stored: stored, excluded: excluded, &state) }
            guard let reservations, stored?.spec.podCIDR == nil, let cidr = assigned.spec.podCIDR else { return assigned }
            let owners = self.owners
            let key = "node/\(cidr)"
            if try await reservations(key, node.metadata.name, { owner in owners(key) == owner }) { return assigned }
            excluded.insert(key)
        }
        return state.withLock { state in assignLocked(node, stored: stored, excluded: excluded, &state) }
    }

    private func assignLocked(_ node: Node, stored: Node?, excluded: Set<String>, _ state: inout State) -> Node {
        var node = node
        if let current = stored?.spec.podCIDR {
            node.spec.podCIDR = current
            return node
        }
        node.spec.podCIDR = nil
        let name = node.metadata.name
        prune(&state)
        guard settings.nodeMaskSize >= settings.clusterCIDR.prefixLength, settings.nodeMaskSize <= 32 else { return node }
        let count = UInt64(1) << UInt64(settings.nodeMaskSize - settings.clusterCIDR.prefixLength)
        for step in 0..<count {
            let index = (state.nextSubnet &+ step) % count
            guard let subnet = settings.clusterCIDR.subnet(index, length: settings.nodeMaskSize) else { break }
            let key = "node/\(subnet)"
            if holder(key, except: name, state) == nil && !excluded.contains(key) {
                node.spec.podCIDR = subnet.description
                remember(key, owner: name, &state)
                state.nextSubnet = (index + 1) % count
                return node
            }
        }
        return node
    }

    /// Who else holds `key`: an object in the cache, or an assignment of the last minute.
    private func holder(_ key: String, except name: String, _ state: State) -> String? {
        if let owner = owners(key), owner != name { return owner }
        if let recent = state.recent[key], recent.owner != name { return recent.owner }
        return nil
    }

    /// Forgets assignments older than a minute, at most once a second (not at every call: that
    /// would cost O(n) per assignment when many are made at once).
    private func prune(_ state: inout State) {
        let now = ContinuousClock.now
        guard now - state.pruned >= .seconds(1) else { return }
        state.pruned = now
        state.recent = state.recent.filter { now - $0.value.at < .seconds(60) }
    }

    private func remember(_ key: String, owner: String, _ state: inout State) {
        state.recent[key] = (owner, ContinuousClock.now)
    }

    private func invalid(_ path: String, _ message: String) -> APIFailure {
        APIFailure(.unprocessableContent, "Invalid", "\(path) \(message)", problems: [ValidationProblem(path: path, message: message)])
    }
}
