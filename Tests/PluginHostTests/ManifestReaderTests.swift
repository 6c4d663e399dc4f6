import CapstanCore
import CapstanScheduling
import CapstanSDK
import PluginHost
import Testing

@Suite struct ManifestReaderTests {
    @Test func readsSeveralDocumentsIntoSchedulerInputs() throws {
        let nodes = try ManifestReader.parse("""
        apiVersion: capstan.dev/v1
        kind: Node
        metadata: {name: gpu-a, labels: {zone: a}}
        spec: {}
        status:
          allocatable: {cpu: "8", memory: 32Gi, gpu: "2"}
          gpus: [{index: 1, model: T4}, {index: 0, model: V100}]
        ---
        apiVersion: capstan.dev/v1
        kind: Node
        metadata: {name: plain}
        spec: {unschedulable: true}
        status:
          capacity: {cpu: 500m, memory: 1Gi, gpu: "1"}
        """, source: "nodes.yaml")
        let workloads = try ManifestReader.parse("""
        apiVersion: capstan.dev/v1
        kind: Workload
        metadata: {name: nb}
        spec:
          replicas: 2
          template:
            command: [jupyter]
            resources: {requests: {cpu: 250m, gpu-milli: "300"}}
            gpuModels: [T4]
        """, source: "workloads.yaml")
        let trace = ClusterTrace(manifests: nodes, workloads)
        #expect(trace.nodes.map(\.name) == ["gpu-a", "plain"])
        #expect(trace.nodes[0].gpus.map(\.model) == ["V100", "T4"])
        #expect(trace.nodes[0].allocatable.cpuMilli == 8000 && trace.nodes[0].allocatable.memoryBytes == 32 << 30)
        #expect(trace.nodes[0].labels == ["zone": "a"] && trace.nodes[0].index == 0 && trace.nodes[1].index == 1)
        // Capacity stands in for a missing allocatable; a gpu count without devices gets unnamed GPUs.
        #expect(trace.nodes[1].allocatable.cpuMilli == 500 && trace.nodes[1].gpus.count == 1 && trace.nodes[1].unschedulable)
        #expect(trace.pods.map(\.name) == ["nb-0", "nb-1"])
        #expect(trace.pods[0].requests == ResourceVector(cpuMilli: 250, extended: ["gpu-milli": 300]) && trace.pods[0].gpuModels == ["T4"])
    }

    @Test func everyProblemNamesItsDocumentLineAndField() {
        do {
            _ = try ManifestReader.parse("""
            apiVersion: capstan.dev/v1
            kind: Node
            metadata: {name: a}
            spec: {}
            status:
              allocatable: {cpu: lots, gpu: "2"}
              gpus: [{index: 0, model: T4}, {index: 0, model: T4}, {index: 2, model: T4}]
            ---
            kind: Workload
            metadata: {name: w}
            spec: {replicas: -1, template: {command: [x]}}
            ---
            kind: Gadget
            metadata: {name: g}
            """, source: "bad.yaml")
            Issue.record("expected errors")
        } catch {
            #expect(error.subject == "bad.yaml")
            let lines = error.problems.map(\.description)
            // Each problem names the line of its field, not of its document.
            #expect(lines.contains { $0.hasPrefix("document 1, line 6: status.allocatable.cpu: \"lots\" is not a quantity") }, "\(lines)")
            #expect(lines.contains("document 1, line 7: status.gpus[1].index: 0 is negative or repeated; number GPUs 0, 1, 2…"))
            #expect(lines.contains("document 1, line 6: status.allocatable.gpu: says 2 but 3 GPUs are listed in status.gpus"))
            #expect(lines.contains("document 2, line 11: spec.replicas: -1 is negative; give 0 to 10000"))
            #expect(lines.contains { $0.hasPrefix("document 3, line 13: kind: \"Gadget\" is not a Capstan kind") })
        }
    }

    /// Issue 9: three typos give three problems, each with its own line.
    @Test func everyUnknownKeyIsReportedWithItsLine() {
        do {
            _ = try ManifestReader.parse("""
            apiVersion: capstan.dev/v1
            kind: Workload
            metadata:
              name: web
              lables: {tier: front}
            spec:
              replica: 2
              template:
                comand: [sleep, "60"]
                command: [sleep, "60"]
            """, source: "typos.yaml")
            Issue.record("expected errors")
        } catch {
            let lines = error.problems.map(\.description)
            #expect(lines.contains { $0.hasPrefix("document 1, line 5: metadata.lables: unknown key") }, "\(lines)")
            #expect(lines.contains { $0.hasPrefix("document 1, line 7: spec.replica: unknown key") }, "\(lines)")
            #expect(lines.contains { $0.hasPrefix("document 1, line 9: spec.template.comand: unknown key") }, "\(lines)")
        }
    }

    @Test func invalidYAMLAndMissingFilesAreReported() {
        #expect(throws: ValidationError.self) { try ManifestReader.parse("kind: [unclosed", source: "x.yaml") }
        do {
            _ = try ManifestReader.read(file: "/nonexistent/nodes.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("/nonexistent/nodes.yaml is invalid") && error.description.contains("cannot be read"))
        }
    }
}
