import CapstanAPI
import CapstanCore
import CapstanJSON
import CapstanSupervision
import Foundation
import PluginHost

/// The parsers that read what users, files and other programs send, each as a function of raw
/// bytes that must never crash, hang or grow without bound, whatever the bytes (issue 10).
/// `capstan-fuzz` runs them under libFuzzer (Sources/CapstanFuzz/fuzz.sh); the tests replay the
/// seed inputs through them.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Manifests as `capstan apply` and the API's YAML bodies read them: multi-document YAML,
    /// anchors and aliases, every kind, then validation.
    case manifestYAML = "manifest-yaml"
    /// The API's JSON bodies: the duplicate-key scan, decoding, validation, the stored form.
    case manifestJSON = "manifest-json"
    /// Quantities (`500m`, `2Gi`, `1e3`) and the arithmetic the scheduler does on them.
    case quantity
    /// `labelSelector=` of lists and watches.
    case labelSelector = "label-selector"
    /// `capstan.yaml`, the operator's config.
    case config
    /// What the runtimes read back from disk: /proc/PID/stat lines and the shim's number files.
    case runtimeRecord = "runtime-record"

    /// The store's encoder must write exactly Foundation's sorted-keys bytes (stored specs are
    /// compared as text): any input that makes them differ is a finding.
    static func encodeBothWays(_ object: AnyResource) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let foundation = try? encoder.encode(object)
        let sorted = try? SortedJSON.encode(object)
        precondition(foundation.map(Array.init) == sorted, "SortedJSON and JSONEncoder(.sortedKeys) wrote different text for \(object.kind) \"\(object.name)\"")
    }

    /// Runs one input.
    public func run(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        switch self {
        case .manifestYAML:
            if let objects = try? ManifestReader.parse(text, source: "fuzz") {
                for object in objects { Self.encodeBothWays(object) }
            }
        case .manifestJSON:
            let data = Data(bytes)
            _ = JSONKeyCheck.firstDuplicate(in: data)
            let object = try? JSONDecoder().decode(AnyResource.self, from: data)
            let fast = try? FastJSONDecoder().decode(AnyResource.self, from: data)
            precondition((object == nil) == (fast == nil), "FastJSONDecoder \(fast == nil ? "refused" : "decoded") what JSONDecoder \(object == nil ? "refused" : "decoded")")
            if let object, let fast {
                precondition((try? SortedJSON.encode(object)) == (try? SortedJSON.encode(fast)), "FastJSONDecoder and JSONDecoder decoded different objects")
            }
            if let object {
                _ = object.validate()
                Self.encodeBothWays(object)
                if case .workload(let workload) = object { _ = TemplateHash.of(workload.spec) }
            }
        case .quantity:
            for line in text.split(separator: "\n", omittingEmptySubsequences: false).prefix(64) {
                guard let quantity = try? Quantity(parsing: String(line)) else { continue }
                _ = quantity.description
                _ = quantity.value
                let list = ResourceList(["cpu": String(line), "memory": String(line), "gpu": String(line)])
                _ = list.validate(at: "fuzz")
                var sum = list.vector
                sum += list.vector
                sum -= ResourceVector(cpuMilli: .max, memoryBytes: .min)
                _ = sum.covers(list.vector)
            }
        case .labelSelector:
            if let terms = try? LabelSelector.parse(text) { _ = terms.count }
        case .config:
            _ = try? HostConfiguration.parse(text, source: "fuzz.yaml", baseDirectory: "/nonexistent")
        case .runtimeRecord:
            _ = ProcessInspection.startTicks(fromStat: text)
            _ = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
            _ = Timestamp(rfc3339: text)
        }
    }

    /// Inputs to start from: real manifests and edge cases.
    public var seeds: [[UInt8]] {
        let texts: [String]
        switch self {
        case .manifestYAML:
            texts = [
                "apiVersion: capstan.dev/v1\nkind: Workload\nmetadata: {name: web}\nspec:\n  replicas: 3\n  template:\n    command: [sh, -c, 'exec sleep 1']\n    resources: {requests: {cpu: 500m, memory: 64Mi}}\n    readinessProbe: {httpGet: {port: 8080}, periodSeconds: 1}\n",
                "kind: Secret\nmetadata: {name: s}\nspec: {stringData: {a: b}, data: {c: ZA==}}\n---\nkind: VolumeClaim\nmetadata: {name: c}\nspec: {size: 1Gi}\n",
                "a: &a [x, y]\nb: &b [*a, *a]\nc: [*b, *b]\n",
                "kind: Node\nmetadata: {name: n}\nspec: {agentAddress: 'http://127.0.0.1:1'}\nstatus: {capacity: {cpu: '4', gpu: 1}, gpus: [{index: 0, model: A100}]}\n",
            ]
        case .manifestJSON:
            texts = [
                #"{"kind":"Workload","metadata":{"name":"a"},"spec":{"replicas":1,"template":{"command":["x"],"securityContext":{"runAsUser":1000,"capabilities":{"drop":["ALL"]}}}}}"#,
                #"{"kind":"Instance","metadata":{"name":"i","name":"j"},"spec":{"template":{"command":["x"]}}}"#,
                #"{"kind":"Service","metadata":{"name":"s"},"spec":{"selector":{"a":"b"},"ports":[{"port":80,"targetPort":8080}]}}"#,
            ]
        case .quantity: texts = ["500m", "2Gi", "1e3", "0.5", "-1", "9223372036854775807", "1E30", "1.5Ei"]
        case .labelSelector: texts = ["app=web", "a=b,c=d", "=x", "a", ""]
        case .config: texts = ["plugins:\n  - name: binpack\ndefaults:\n  scheduler: binpack\n", "profiles:\n  - name: p\n    plugins: [{name: binpack, weight: 10}]\n"]
        case .runtimeRecord: texts = ["1234 (sh) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10", "1 (a) b) Z 1", "2026-11-24T18:23:12.5+01:00", "42\n"]
        }
        return texts.map { Array($0.utf8) }
    }
}
