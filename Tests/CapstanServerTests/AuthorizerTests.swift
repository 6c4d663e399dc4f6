import CapstanCore
import Testing
@testable import CapstanServer

/// The authorization matrix: each role × each verb × each kind, against the policy table below
/// (issue 10: "an authorization matrix test").
@Suite struct AuthorizerTests {
    static let kinds = ["Node", "Workload", "Instance", "Volume", "VolumeClaim", "Service", "Endpoints", "Event", "Secret"]

    let admin = Principal(role: .admin, tokenID: "a")
    let viewer = Principal(role: .viewer, tokenID: "v")
    let node = Principal(role: .node, node: "n1", tokenID: "n")

    func instance(on node: String?) -> AnyResource {
        .instance(Instance(name: "i", spec: InstanceSpec(template: InstanceTemplate(command: ["x"]), nodeName: node)))
    }

    func volume(on node: String?) -> AnyResource {
        .volume(Volume(name: "v", spec: VolumeSpec(provisioner: "hostpath", volumeHandle: "h", capacity: Quantity(value: 1), nodeName: node)))
    }

    func claim(bound volume: String?) -> AnyResource {
        var claim = VolumeClaim(name: "c", spec: VolumeClaimSpec(size: Quantity(value: 1 << 20), volumeName: volume))
        claim.metadata.revision = 3
        return .volumeClaim(claim)
    }

    @Test func adminDoesEverythingButWriteStatus() {
        for kind in Self.kinds {
            for verb in Authorizer.Verb.allCases {
                let denial = Authorizer.denial(admin, verb, kind: kind, name: "x")
                #expect((denial == nil) == (verb != .updateStatus), "admin \(verb) \(kind)")
            }
        }
    }

    @Test func viewerOnlyReads() {
        for kind in Self.kinds {
            for verb in Authorizer.Verb.allCases {
                let denial = Authorizer.denial(viewer, verb, kind: kind, name: "x")
                #expect((denial == nil) == (verb == .read), "viewer \(verb) \(kind)")
            }
        }
    }

    /// What a node may do to objects of its own and of another node, kind by kind.
    @Test func aNodeIsConfinedToItself() {
        func allowed(_ verb: Authorizer.Verb, _ kind: String, name: String? = "x", object: AnyResource? = nil, stored: AnyResource? = nil, filter: String? = nil) -> Bool {
            Authorizer.denial(node, verb, kind: kind, name: name, object: object, stored: stored, nodeFilter: filter) == nil
        }
        // Writes its own Node, nobody else's; reads every Node (other nodes' pod subnets and
        // addresses are where it routes their instances).
        for verb in [Authorizer.Verb.create, .update, .updateStatus] {
            #expect(allowed(verb, "Node", name: "n1"))
            #expect(!allowed(verb, "Node", name: "n2"))
        }
        #expect(allowed(.read, "Node", name: "n2"))
        #expect(allowed(.read, "Node", name: nil))
        #expect(!allowed(.delete, "Node", name: "n1"))
        // Instances bound to it: read, status, delete; never create or change their spec.
        #expect(allowed(.read, "Instance", stored: instance(on: "n1")))
        #expect(!allowed(.read, "Instance", stored: instance(on: "n2")))
        #expect(allowed(.read, "Instance", name: nil, filter: "n1"))
        #expect(!allowed(.read, "Instance", name: nil))
        #expect(!allowed(.read, "Instance", name: nil, filter: "n2"))
        #expect(allowed(.updateStatus, "Instance", stored: instance(on: "n1")))
        #expect(!allowed(.updateStatus, "Instance", stored: instance(on: "n2")))
        #expect(!allowed(.updateStatus, "Instance", stored: instance(on: nil)))
        #expect(allowed(.delete, "Instance", stored: instance(on: "n1")))
        #expect(!allowed(.delete, "Instance", stored: instance(on: "n2")))
        #expect(!allowed(.create, "Instance", object: instance(on: "n1")))
        #expect(!allowed(.update, "Instance", object: instance(on: "n1"), stored: instance(on: "n1")))
        // Volumes on itself; claims only bound, once.
        #expect(allowed(.create, "Volume", object: volume(on: "n1")))
        #expect(!allowed(.create, "Volume", object: volume(on: "n2")))
        #expect(allowed(.delete, "Volume", stored: volume(on: "n1")))
        #expect(!allowed(.delete, "Volume", stored: volume(on: "n2")))
        #expect(allowed(.update, "VolumeClaim", object: claim(bound: "v"), stored: claim(bound: nil)))
        #expect(!allowed(.update, "VolumeClaim", object: claim(bound: "w"), stored: claim(bound: "v")))
        var resized = claim(bound: "v")
        if case .volumeClaim(var c) = resized { c.spec.size = Quantity(value: 1 << 30); resized = .volumeClaim(c) }
        #expect(!allowed(.update, "VolumeClaim", object: resized, stored: claim(bound: nil)))
        // Events freely; services and endpoints read; workloads not at all.
        for verb in [Authorizer.Verb.read, .create, .update, .delete] { #expect(allowed(verb, "Event")) }
        for kind in ["Service", "Endpoints", "VolumeClaim", "Volume"] {
            #expect(allowed(.read, kind))
            #expect(!allowed(.updateStatus, kind))
        }
        for verb in Authorizer.Verb.allCases { #expect(!allowed(verb, "Workload")) }
        for verb in [Authorizer.Verb.create, .update, .delete] {
            #expect(!allowed(verb, "Service"))
            #expect(!allowed(verb, "Endpoints"))
        }
        // Secrets: only those its instances use, one by one.
        #expect(Authorizer.denial(node, .read, kind: "Secret", name: "db", secretInUse: true) == nil)
        #expect(Authorizer.denial(node, .read, kind: "Secret", name: "db", secretInUse: false) != nil)
        #expect(Authorizer.denial(node, .read, kind: "Secret", name: nil, secretInUse: true) != nil)
        for verb in [Authorizer.Verb.create, .update, .delete, .updateStatus] {
            #expect(Authorizer.denial(node, verb, kind: "Secret", name: "db", secretInUse: true) != nil)
        }
    }
}
