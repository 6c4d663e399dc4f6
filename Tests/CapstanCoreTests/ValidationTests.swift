import CapstanCore
import Foundation
import Testing

@Suite struct ValidationTests {
    func decode(_ json: String) throws -> AnyResource {
        try JSONDecoder().decode(AnyResource.self, from: Data(json.utf8))
    }

    @Test func reportsEveryProblemWithItsFieldPath() throws {
        let resource = try decode("""
        {"apiVersion": "capstan.dev/v1", "kind": "Workload", "metadata": {"name": "Bad_Name"},
         "spec": {"replicas": -1, "template": {"command": ["web"],
           "resources": {"requests": {"cpu": "abc", "memory": "1.5", "gpu": "-2"}},
           "ports": [{"containerPort": 70000}]}}}
        """)
        let problems = resource.validate().map(\.description)
        #expect(problems.contains { $0.hasPrefix("metadata.name: \"Bad_Name\" is not a DNS label") })
        #expect(problems.contains("spec.replicas: -1 is negative; give 0 to 10000"))
        #expect(problems.contains { $0.hasPrefix("spec.template.resources.requests.cpu: \"abc\" is not a quantity") })
        #expect(problems.contains { $0.hasPrefix("spec.template.resources.requests.memory: \"1.5\" is fractional") })
        #expect(problems.contains { $0.hasPrefix("spec.template.resources.requests.gpu: \"-2\" is negative") })
        #expect(problems.contains("spec.template.ports[0].containerPort: 70000 is not a port (1-65535)"))
        #expect(problems.count == 6)
    }

    @Test func validManifestHasNoProblem() throws {
        let resource = try decode("""
        {"apiVersion": "capstan.dev/v1", "kind": "Workload", "metadata": {"name": "web", "labels": {"app": "web"}},
         "spec": {"replicas": 3, "template": {"command": ["python3", "-m", "http.server"],
           "resources": {"requests": {"cpu": "250m", "memory": "64Mi", "gpu-milli": 500}}}}}
        """)
        #expect(resource.validate().isEmpty)
        guard case .workload(let workload) = resource else { Issue.record("not a workload"); return }
        let vector = workload.spec.template.resources.requests.vector
        #expect(vector.cpuMilli == 250 && vector.memoryBytes == 64 << 20 && vector.extended["gpu-milli"] == 500)
    }

    @Test func wrongTypeNamesTheField() {
        let json = #"{"kind": "Workload", "metadata": {"name": "w"}, "spec": {"replicas": "three", "template": {"command": ["x"]}}}"#
        do {
            _ = try decode(json)
            Issue.record("expected a type error")
        } catch let error as DecodingError {
            #expect(error.problem.path == "spec.replicas")
            #expect(error.problem.message.hasPrefix("expected an integer"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func unknownKeyIsRefused() {
        let json = #"{"kind": "Service", "metadata": {"name": "s", "lables": {}}, "spec": {"selector": {"a": "b"}, "ports": [{"port": 80, "targetPort": 8080}]}}"#
        do {
            _ = try decode(json)
            Issue.record("expected an unknown-key error")
        } catch let error as DecodingError {
            #expect(error.problem.path == "metadata.lables")
            #expect(error.problem.message.contains("unknown key"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    /// Events were decoded by synthesized Codable and dropped a key they did not know.
    @Test func anEventsUnknownSpecKeyIsRefusedAndAKnownOneStillReads() throws {
        let json = #"{"kind": "Event", "metadata": {"name": "e"}, "spec": {"involvedObject": "Node/n", "reason": "R", "message": "m", "type": "Normal", "source": "s", "count": 2, "colour": "red"}}"#
        do {
            _ = try decode(json)
            Issue.record("expected an unknown-key error")
        } catch let error as DecodingError {
            #expect(error.problem.path == "spec.colour")
            #expect(error.problem.message.contains("unknown key"))
        }
        guard case .event(let event) = try decode(json.replacingOccurrences(of: #", "colour": "red""#, with: #", "lastTimestamp": "2026-12-01T00:00:00Z""#)) else {
            Issue.record("not an Event")
            return
        }
        #expect(event.spec.count == 2 && event.spec.lastTimestamp != nil && event.spec.type == .normal)
        // `count` is still required, as it was.
        #expect(throws: DecodingError.self) { try decode(json.replacingOccurrences(of: #", "count": 2, "colour": "red""#, with: "")) }
    }

    @Test func unknownKindIsRefused() {
        #expect(throws: DecodingError.self) { try decode(#"{"kind": "Pod", "metadata": {"name": "p"}, "spec": {}}"#) }
    }

    @Test func resourcesRoundTripThroughJSON() throws {
        let node = Node(name: "node-1", spec: NodeSpec(), status: NodeStatus(allocatable: ["cpu": "4", "memory": "8Gi"], gpus: [GPUDevice(index: 0, model: "A100")], lastHeartbeat: Timestamp(secondsSinceEpoch: 1_800_000_000)))
        let data = try JSONEncoder().encode(AnyResource.node(node))
        #expect(try JSONDecoder().decode(AnyResource.self, from: data) == .node(node))
    }

    @Test func resourceVectorArithmetic() {
        let free = ResourceVector(cpuMilli: 1000, memoryBytes: 1 << 30, extended: ["gpu": 1])
        let request = ResourceVector(cpuMilli: 1500, memoryBytes: 1 << 20, extended: ["gpu": 2])
        #expect(!free.covers(request))
        #expect(free.shortfalls(for: request) == ["cpu", "gpu"])
        #expect((free + request - request) == free)
    }
}

@Suite struct TimestampTests {
    @Test func printsAndParsesRFC3339() {
        let time = Timestamp(secondsSinceEpoch: 1_795_544_592)
        #expect(time.description == "2026-11-24T18:23:12Z")
        #expect(Timestamp(rfc3339: "2026-11-24T18:23:12Z") == time)
        #expect(Timestamp(rfc3339: "2026-11-24T19:23:12+01:00") == time)
        #expect(Timestamp(rfc3339: "1970-01-01T00:00:00.5Z")?.secondsSinceEpoch == 0.5)
        #expect(Timestamp(rfc3339: "2026-13-01T00:00:00Z") == nil)
        #expect(Timestamp(rfc3339: "yesterday") == nil)
    }
}
