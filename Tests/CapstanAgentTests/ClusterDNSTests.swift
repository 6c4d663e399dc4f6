import Foundation
import Testing
@testable import CapstanAgent

/// Issue 11: cluster DNS answers service names (short and in the cluster domain), says NXDOMAIN
/// for unknown names in the domain, refuses malformed queries, and leaves every other name to
/// the node's resolvers — in process here; end to end in NetworkingTests.
@Suite struct ClusterDNSTests {
    let directory = NSTemporaryDirectory() + "capstan-dns-\(UUID().uuidString.prefix(8))"

    func dns() throws -> ClusterDNS {
        try ClusterDNS(address: "10.244.0.1", domain: "capstan.local", upstreams: ["127.0.0.1:5399"], directory: directory) { name in
            switch name {
            case "backend": ["10.96.0.7"]
            case "peers": ["10.244.0.5", "10.244.1.5"]
            case "empty": []
            default: nil
            }
        }
    }

    /// A standard query for `name` of `type` (1 = A, 28 = AAAA).
    static func query(_ name: String, type: UInt16 = 1, id: UInt16 = 0x1234) -> [UInt8] {
        var message: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") { message.append(UInt8(label.utf8.count)); message += Array(label.utf8) }
        message += [0, UInt8(type >> 8), UInt8(type & 0xff), 0, 1]
        return message
    }

    /// (rcode, the A records' addresses) of a response.
    static func parse(_ response: [UInt8], question: Int) -> (code: UInt8, addresses: [String]) {
        let count = Int(response[6]) << 8 | Int(response[7])
        var addresses: [String] = []
        var index = question
        for _ in 0..<count {
            // Name pointer (2), type, class, TTL, length (2+2+4+2), then 4 bytes of address.
            index += 12
            addresses.append(response[index..<(index + 4)].map(String.init).joined(separator: "."))
            index += 4
        }
        return (response[3] & 0x0f, addresses)
    }

    @Test func servicesResolveByShortAndFullName() throws {
        let server = try dns()
        for name in ["backend", "backend.capstan.local", "BACKEND.Capstan.Local"] {
            let query = Self.query(name)
            let answer = try #require(server.answer(query), "\(name) is answered here")
            #expect(answer[0] == 0x12 && answer[1] == 0x34, "the query's ID")
            #expect(answer[2] & 0x80 != 0, "a response")
            let parsed = Self.parse(answer, question: query.count)
            #expect(parsed.code == 0)
            #expect(parsed.addresses == ["10.96.0.7"], "\(name)")
        }
        let headless = Self.parse(try #require(server.answer(Self.query("peers.capstan.local"))), question: Self.query("peers.capstan.local").count)
        #expect(headless.addresses == ["10.244.0.5", "10.244.1.5"])
        // AAAA of a known name: the name exists, with no such records.
        let aaaa = Self.parse(try #require(server.answer(Self.query("backend", type: 28))), question: Self.query("backend", type: 28).count)
        #expect(aaaa.code == 0 && aaaa.addresses.isEmpty)
    }

    @Test func unknownNamesInTheDomainAreNXDomainAndOthersAreForwarded() throws {
        let server = try dns()
        let missing = try #require(server.answer(Self.query("nothing.capstan.local")))
        #expect(missing[3] & 0x0f == 3)
        #expect(server.answer(Self.query("example.org")) == nil, "left to the node's resolvers")
        #expect(server.answer(Self.query("nothing")) == nil, "a bare name that is no service may be the node resolvers' to answer")
        // Malformed: a label running past the end, a response instead of a query.
        var broken = Self.query("backend")
        broken[12] = 60
        #expect(server.answer(broken).map { $0[3] & 0x0f } == 1)
        // Responses and runts get no answer at all (answering a response could start a loop
        // between two servers).
        var response = Self.query("backend")
        response[2] |= 0x80
        #expect(ClusterDNS.isDroppable(response))
        #expect(ClusterDNS.isDroppable([1, 2, 3]) && ClusterDNS.isDroppable([]))
        #expect(!ClusterDNS.isDroppable(Self.query("backend")))
        let resolv = try String(contentsOfFile: server.resolvConf, encoding: .utf8)
        #expect(resolv.contains("nameserver 10.244.0.1") && resolv.contains("search capstan.local"))
    }

    /// A headless service with many endpoints: the answer fits 512 bytes and says it was cut.
    @Test func bigAnswersAreTruncatedToAUDPMessage() throws {
        let many = (0..<100).map { "10.244.\($0 / 250).\($0 % 250 + 2)" }
        let server = try ClusterDNS(address: "10.244.0.1", domain: "capstan.local", upstreams: [], directory: directory) { $0 == "many" ? many : nil }
        let answer = try #require(server.answer(Self.query("many")))
        #expect(answer.count <= 512)
        #expect(answer[2] & 0x02 != 0, "TC set")
        #expect(Self.parse(answer, question: Self.query("many").count).addresses.count == (512 - 12 - (Self.query("many").count - 12)) / 16)
    }

    @Test func serviceVariablesFollowKubernetesNames() {
        let variables = InstanceSupervisor.serviceVariables([("my-backend", "10.96.0.7", [.init(name: "http", port: 8080, targetPort: 80), .init(name: "admin-ui", port: 9000, targetPort: 9000)])])
        #expect(variables["MY_BACKEND_SERVICE_HOST"] == "10.96.0.7")
        #expect(variables["MY_BACKEND_SERVICE_PORT"] == "8080")
        #expect(variables["MY_BACKEND_SERVICE_PORT_ADMIN_UI"] == "9000")
    }
}
