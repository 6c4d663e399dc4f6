import CapstanCore
import Foundation
import PluginHost

/// Every object of the example manifests under `Examples/` (the `capstan.yaml` files are host
/// configuration, not objects), by file: what the JSON tests compare the two codecs on.
enum ExampleManifests {
    static func all() -> [(file: String, objects: [AnyResource])] {
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Examples")
        let files = FileManager.default.enumerator(atPath: examples.path)?.compactMap { $0 as? String }.filter { $0.hasSuffix(".yaml") && !$0.hasSuffix("capstan.yaml") } ?? []
        return files.sorted().compactMap { file in
            guard let read = try? ManifestReader.read(file: examples.appendingPathComponent(file).path) else { return nil }
            return (file, read)
        }
    }

    /// A bound, running Instance with every optional field set, escapes, non-ASCII text, a
    /// fraction and a negative number: what the store and the watchers carry most.
    static func runningInstance() -> Instance {
        var template = InstanceTemplate(command: ["sh", "-c", "echo \"hi\" > /tmp/x"], labels: ["app": "web", "tier": "front/end"], image: "busybox",
                                        env: ["Z": "1", "A": "two words é 😀", "PATH": "/bin:/usr/bin"], workingDir: "/srv",
                                        resources: ResourceRequirements(requests: ["cpu": "250m", "memory": "64Mi", "gpu-milli": "500"], limits: ["memory": "128Mi"]),
                                        ports: [PortSpec(name: "http", containerPort: 8080, hostPort: 30080, protocol: "tcp")],
                                        volumeMounts: [VolumeMount(claim: "data", mountPath: "/data")], runtime: "runc", scheduler: "fgd",
                                        gpuModels: ["A100", "V100"], terminationGracePeriodSeconds: 2.5)
        template.terminationGracePeriodSeconds = 0.25
        var instance = Instance(name: "web-abc-0", labels: ["capstan.dev/workload": "web"], spec: InstanceSpec(template: template, nodeName: "node-1"))
        instance.metadata.revision = 42
        instance.metadata.generation = 3
        instance.metadata.creationTimestamp = Timestamp(secondsSinceEpoch: 1_790_000_000.125)
        instance.status = InstanceStatus(phase: .running, ready: true, restarts: 2, exitCode: -137, reason: "Killed", message: "killed after \"grace\"\n",
                                         startedAt: Timestamp(secondsSinceEpoch: 1_790_000_001), addresses: ["10.0.0.2"], pid: 1234)
        return instance
    }
}
