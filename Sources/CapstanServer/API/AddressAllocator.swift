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
    struct Settings: Sendable, Hashable {
        /// Every node's pod subnet lies in it.
        var clusterCIDR: IPv4Network
        /// Services' virtual IPs lie in it.
        var serviceCIDR: IPv4Network
        /// Prefix length of a node's subnet (24: 254 instances a node).
        var nodeMaskSize: Int
    }

    let settings: Settings
    /// `(kind, name) → object` of the cache.
    private let objects: @Sendable (_ kind: String) -> [AnyResource]
    private let recent = Mutex<[String: (owner: String, at: ContinuousClock.Instant)]>([:])
    /// One assignment at a time: the scan for a free address and remembering the one given
    /// must not interleave with another's (two creates would get the same address).
    private let assigning = Mutex(())

    private let reservations: Reservations?

    init(settings: Settings, reservations: Reservations? = nil, objects: @escaping @Sendable (_ kind: String) -> [AnyResource]) {
        self.settings = settings
        self.objects = objects
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
            let assigned = try assigning.withLock { _ in try assignLocked(service, stored: stored, excluded: excluded) }
            guard let reservations, stored?.spec.clusterIP == nil, let ip = assigned.spec.clusterIP else { return assigned }
            let name = service.metadata.name
            let objects = self.objects
            if try await reservations("svc/\(ip)", name, { owner in
                objects("Service").contains { if case .service(let other) = $0 { other.metadata.name == owner && other.spec.clusterIP == ip } else { false } }
            }) { return assigned }
            if service.spec.clusterIP != nil { throw invalid("spec.clusterIP", "\(ip) is already the address of another service") }
            excluded.insert("svc/\(ip)")
        }
        throw invalid("spec.clusterIP", "no free address could be reserved (many services are being created at once); try again")
    }

    private func assignLocked(_ service: CapstanCore.Service, stored: CapstanCore.Service?, excluded: Set<String>) throws -> CapstanCore.Service {
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
        let taken = takenServiceIPs(except: name)
        if let asked = service.spec.clusterIP {
            guard let address = IPv4Address(asked) else { return service }  // validation names it
            guard settings.serviceCIDR.contains(address), address != settings.serviceCIDR.address else {
                throw invalid("spec.clusterIP", "\(asked) is not in the service CIDR \(settings.serviceCIDR); leave it out to get a free one")
            }
            if let owner = taken[address] { throw invalid("spec.clusterIP", "\(asked) is already the address of service \"\(owner)\"") }
            remember("svc/\(asked)", owner: name)
            return service
        }
        // The network's first address is never handed out; the last (broadcast) neither.
        var index: UInt64 = 1
        while index + 1 < settings.serviceCIDR.size, let address = settings.serviceCIDR.address(at: index) {
            if taken[address] == nil && !excluded.contains("svc/\(address)") {
                service.spec.clusterIP = address.description
                remember("svc/\(address)", owner: name)
                return service
            }
            index += 1
        }
        throw invalid("spec.clusterIP", "the service CIDR \(settings.serviceCIDR) has no free address left; delete unused services or widen --service-cidr")
    }

    /// The node as it should be stored: its pod subnet kept; one given when it has none. A
    /// full cluster CIDR leaves it without one (its network plugin then says why on attach).
    func assign(_ node: Node, stored: Node?) async throws -> Node {
        var excluded = Set<String>()
        for _ in 0..<64 {
            let assigned = assigning.withLock { _ in assignLocked(node, stored: stored, excluded: excluded) }
            guard let reservations, stored?.spec.podCIDR == nil, let cidr = assigned.spec.podCIDR else { return assigned }
            let objects = self.objects
            if try await reservations("node/\(cidr)", node.metadata.name, { owner in
                objects("Node").contains { if case .node(let other) = $0 { other.metadata.name == owner && other.spec.podCIDR == cidr } else { false } }
            }) { return assigned }
            excluded.insert("node/\(cidr)")
        }
        return assigning.withLock { _ in assignLocked(node, stored: stored, excluded: excluded) }
    }

    private func assignLocked(_ node: Node, stored: Node?, excluded: Set<String>) -> Node {
        var node = node
        if let current = stored?.spec.podCIDR {
            node.spec.podCIDR = current
            return node
        }
        node.spec.podCIDR = nil
        let name = node.metadata.name
        var taken = Set<String>()
        for case .node(let other) in objects("Node") where other.metadata.name != name {
            if let cidr = other.spec.podCIDR { taken.insert(cidr) }
        }
        taken.formUnion(recentlyGiven(prefix: "node/", except: name))
        var index: UInt64 = 0
        while let subnet = settings.clusterCIDR.subnet(index, length: settings.nodeMaskSize) {
            if !taken.contains(subnet.description) && !excluded.contains("node/\(subnet)") {
                node.spec.podCIDR = subnet.description
                remember("node/\(subnet)", owner: name)
                return node
            }
            index += 1
        }
        return node
    }

    private func takenServiceIPs(except name: String) -> [IPv4Address: String] {
        var taken: [IPv4Address: String] = [:]
        for case .service(let other) in objects("Service") where other.metadata.name != name {
            if let ip = other.spec.clusterIP.flatMap(IPv4Address.init) { taken[ip] = other.metadata.name }
        }
        let now = ContinuousClock.now
        recent.withLock { recent in
            recent = recent.filter { now - $0.value.at < .seconds(60) }
            for (key, value) in recent where key.hasPrefix("svc/") && value.owner != name {
                if let ip = IPv4Address(String(key.dropFirst(4))) { taken[ip] = value.owner }
            }
        }
        return taken
    }

    private func recentlyGiven(prefix: String, except name: String) -> Set<String> {
        let now = ContinuousClock.now
        return recent.withLock { recent in
            recent = recent.filter { now - $0.value.at < .seconds(60) }
            return Set(recent.filter { $0.key.hasPrefix(prefix) && $0.value.owner != name }.map { String($0.key.dropFirst(prefix.count)) })
        }
    }

    private func remember(_ key: String, owner: String) {
        recent.withLock { $0[key] = (owner, ContinuousClock.now) }
    }

    private func invalid(_ path: String, _ message: String) -> APIFailure {
        APIFailure(.unprocessableContent, "Invalid", "\(path) \(message)", problems: [ValidationProblem(path: path, message: message)])
    }
}
