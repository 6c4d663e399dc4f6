import CapstanCore
import Synchronization
import Testing
@testable import CapstanServer

/// The allocator asks the cache's index who holds an address and scans from a cursor: what it
/// gives is never held, by a cached object or by an assignment of the last minute, and the scan
/// wraps round to find what was freed.
struct AddressAllocatorTests {
    /// The informer's index, as a test holds it.
    final class Index: Sendable {
        let owners = Mutex<[String: String]>([:])
        func store(_ object: AnyResource) { owners.withLock { for key in AddressAllocator.keys(of: object) { $0[key] = object.name } } }
        func remove(_ key: String) { _ = owners.withLock { $0.removeValue(forKey: key) } }
    }

    func allocator(cluster: String, mask: Int, service: String = "10.96.0.0/16", _ index: Index) -> AddressAllocator {
        AddressAllocator(settings: .init(clusterCIDR: IPv4Network(cluster)!, serviceCIDR: IPv4Network(service)!, nodeMaskSize: mask)) { key in
            index.owners.withLock { $0[key] }
        }
    }

    @Test func nodeSubnetsSkipWhatIsHeldAndRunOutCleanly() async throws {
        let index = Index()
        // Four /24s in a /22; the first and third are held by nodes in the cache.
        for (name, cidr) in [("a", "10.0.0.0/24"), ("c", "10.0.2.0/24")] {
            var node = Node(name: name, spec: NodeSpec())
            node.spec.podCIDR = cidr
            index.store(.node(node))
        }
        let addresses = allocator(cluster: "10.0.0.0/22", mask: 24, index)
        let b = try await addresses.assign(Node(name: "b", spec: NodeSpec()), stored: nil)
        let d = try await addresses.assign(Node(name: "d", spec: NodeSpec()), stored: nil)
        #expect(b.spec.podCIDR == "10.0.1.0/24" && d.spec.podCIDR == "10.0.3.0/24")
        // All four taken (two in the cache, two given a moment ago): none left.
        #expect(try await addresses.assign(Node(name: "e", spec: NodeSpec()), stored: nil).spec.podCIDR == nil)
        // A node's own subnet is its own: asking again for b gives b's.
        #expect(try await addresses.assign(Node(name: "b", spec: NodeSpec()), stored: b).spec.podCIDR == "10.0.1.0/24")
        // "a" deleted: the scan wraps round from the cursor and finds its subnet.
        index.remove("node/10.0.0.0/24")
        #expect(try await addresses.assign(Node(name: "f", spec: NodeSpec()), stored: nil).spec.podCIDR == "10.0.0.0/24")
    }

    @Test func thousandsOfNodesAndServicesGetDistinctAddresses() async throws {
        let index = Index()
        let addresses = allocator(cluster: "10.0.0.0/16", mask: 29, index)   // 8,192 subnets
        var subnets = Set<String>()
        for n in 0..<5_000 {
            let node = try await addresses.assign(Node(name: "n\(n)", spec: NodeSpec()), stored: nil)
            // Every other one reaches the cache, as the informer's lag would have it.
            if n % 2 == 0 { index.store(.node(node)) }
            subnets.insert(try #require(node.spec.podCIDR))
        }
        #expect(subnets.count == 5_000)
        var ips = Set<String>()
        for n in 0..<3_000 {
            let service = try await addresses.assign(Service(name: "s\(n)", spec: ServiceSpec(selector: ["app": "x"], ports: [ServicePort(port: 80, targetPort: 80)])), stored: nil)
            let ip = try #require(service.spec.clusterIP)
            #expect(ip != "10.96.0.0" && ip != "10.96.255.255")
            ips.insert(ip)
        }
        #expect(ips.count == 3_000)
    }
}
