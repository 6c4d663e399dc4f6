import CapstanCore
import Foundation
import Testing

/// Issue 11: the address types and the Service spec's rules.
@Suite struct NetworkTypesTests {
    @Test func addressesAndNetworksParseStrictly() {
        #expect(IPv4Address("10.96.0.1")?.description == "10.96.0.1")
        for bad in ["10.96.0", "10.96.0.256", "010.1.1.1", "1.2.3.4.5", "a.b.c.d", "", "1..2.3"] { #expect(IPv4Address(bad) == nil, "\(bad)") }
        let cluster = IPv4Network("10.244.0.0/16")!
        #expect(cluster.size == 65536)
        #expect(cluster.subnet(1, length: 24)?.description == "10.244.1.0/24")
        #expect(cluster.subnet(256, length: 24) == nil)
        #expect(cluster.contains(IPv4Address("10.244.200.9")!))
        #expect(!cluster.contains(IPv4Address("10.245.0.1")!))
        #expect(IPv4Network("10.244.0.1/16") == nil, "host bits past the prefix are a typo, not a network")
        #expect(IPv4Network("10.244.0.0/33") == nil)
        #expect(cluster.overlaps(IPv4Network("10.244.7.0/24")!))
        #expect(!cluster.overlaps(IPv4Network("10.96.0.0/16")!))
        #expect(IPv4Network("0.0.0.0/0")!.contains(IPv4Address("255.255.255.255")!))
    }


    func problems(_ spec: ServiceSpec) -> [String] { spec.validate(at: "spec").map(\.description) }

    @Test func targetPortIsANumberOrAName() throws {
        let json = #"{"name": "http", "port": 80, "targetPort": "web"}"#
        let named = try JSONDecoder().decode(ServicePort.self, from: Data(json.utf8))
        #expect(named.targetPortName == "web" && named.targetPort == 0)
        let encoded = String(decoding: try JSONEncoder().encode(named), as: UTF8.self)
        #expect(encoded.contains(#""targetPort":"web""#))
        let numbered = try JSONDecoder().decode(ServicePort.self, from: Data(#"{"port": 80, "targetPort": 8080}"#.utf8))
        #expect(numbered.targetPort == 8080 && numbered.targetPortName == nil)
        let defaulted = try JSONDecoder().decode(ServicePort.self, from: Data(#"{"port": 80, "protocol": "UDP"}"#.utf8))
        #expect(defaulted.targetPort == 80 && defaulted.protocol == "udp")
        #expect(throws: (any Error).self) { try JSONDecoder().decode(ServicePort.self, from: Data(#"{"port": 80, "targetport": 8080}"#.utf8)) }
    }

    @Test func badServicesNameTheField() {
        var spec = ServiceSpec(selector: ["app": "web"], ports: [
            ServicePort(name: "http", port: 80, targetPort: 8080),
            ServicePort(name: "http", port: 80, targetPort: 8081),
            ServicePort(port: 70000, targetPort: 0),
        ])
        spec.clusterIP = "10.96.0.300"
        spec.algorithm = "fastest"
        spec.type = "NodePort"
        let found = problems(spec)
        #expect(found.contains { $0.hasPrefix("spec.ports[1].port") && $0.contains("also ports[0]") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("spec.ports[1].name") && $0.contains("also the name") })
        #expect(found.contains { $0.hasPrefix("spec.ports[2].port") && $0.contains("70000") })
        #expect(found.contains { $0.hasPrefix("spec.ports[2].targetPort") })
        #expect(found.contains { $0.hasPrefix("spec.ports[2].name") && $0.contains("several ports") })
        #expect(found.contains { $0.hasPrefix("spec.clusterIP") })
        #expect(found.contains { $0.hasPrefix("spec.algorithm") && $0.contains("random, roundrobin, sourcehash") })
        #expect(found.contains { $0.hasPrefix("spec.type") })
        var fine = ServiceSpec(selector: ["app": "web"], ports: [ServicePort(name: "http", port: 80, targetPortName: "http"), ServicePort(name: "dns", port: 53, targetPortName: "dns", protocol: "udp")])
        fine.clusterIP = "None"
        fine.algorithm = "sourcehash"
        #expect(problems(fine).isEmpty, "\(problems(fine))")
        #expect(PortName.isValid("http-alt") && !PortName.isValid("8080") && !PortName.isValid("Http") && !PortName.isValid("a-very-long-port-name"))
    }
}
