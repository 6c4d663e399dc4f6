import CapstanAPI
import CapstanCore
import CapstanSDK
import Foundation
import PluginHost

/// Storage plugin latency per call (through the loaded .so, as the agent calls it), and claim
/// created → instance Running with its volume mounted, on `capstan dev`.
///
///   sudo .build/release/capstan-bench storage          # CAPSTAN_BENCH_VOLUMES=100 by default
enum StorageBenchmark {
    static func run(products: String) async {
        let volumes = Int(ProcessInfo.processInfo.environment["CAPSTAN_BENCH_VOLUMES"] ?? "") ?? 100
        print("## storage (\(volumes) volumes per plugin, each call timed alone)")
        for (library, plugin) in [("libCapstanHostPath.so", "hostpath"), ("libCapstanLoopback.so", "loopback")] {
            do {
                try await calls(products: products, library: library, plugin: plugin, volumes: volumes)
            } catch {
                print("\(plugin): skipped: \(error)")
            }
        }
        do {
            try await claimToRunning(products: products, rounds: 20)
        } catch {
            print("claim → Running: skipped: \(error)")
        }
        print("")
    }

    static func calls(products: String, library: String, plugin: String, volumes: Int) async throws {
        let directory = NSTemporaryDirectory() + "capstan-bench-storage-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let host = PluginHost.load(HostConfiguration(pluginPaths: [], plugins: [.init(path: products + "/" + library)], stateDirectory: directory + "/state"), nodeName: "bench")
        guard let storage = host.registry.storage(named: plugin) else {
            throw PluginError(.failedPrecondition, host.reports.first?.plugins.compactMap(\.failure).first?.message ?? host.reports.first?.failure?.message ?? "not loaded")
        }
        let names = ["create", "stage", "publish", "unpublish", "unstage", "delete"]
        var samples: [String: [Double]] = [:]
        var createToPublished: [Double] = []
        for index in 0..<volumes {
            let name = "bench-\(index)"
            let staging = storage.capabilities.stageUnstage ? "\(directory)/staging/\(name)" : nil
            let target = "\(directory)/targets/\(name)"
            var times: [Double] = []
            var id = ""
            times.append(try await measure { id = try await storage.createVolume(CreateVolumeRequest(name: name, sizeBytes: 64 << 20, nodeName: "bench")).volumeID })
            times.append(try await measure {
                if let staging {
                    try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
                    try await storage.stageVolume(StageVolumeRequest(volumeID: id, stagingPath: staging))
                }
            })
            times.append(try await measure { _ = try await storage.publishVolume(PublishVolumeRequest(volumeID: id, targetPath: target, stagingPath: staging)) })
            times.append(try await measure { try await storage.unpublishVolume(UnpublishVolumeRequest(volumeID: id, targetPath: target)) })
            times.append(try await measure { if let staging { try await storage.unstageVolume(UnstageVolumeRequest(volumeID: id, stagingPath: staging)) } })
            times.append(try await measure { try await storage.deleteVolume(DeleteVolumeRequest(volumeID: id)) })
            for (call, seconds) in zip(names, times) { samples[call, default: []].append(seconds * 1000) }
            createToPublished.append((times[0] + times[1] + times[2]) * 1000)
        }
        var line = "\(plugin):"
        for call in names {
            let sorted = samples[call, default: []].sorted()
            line += " \(call) p50 \(format(ControlPlaneBenchmark.percentile(sorted, 0.5), 2)) / p99 \(format(ControlPlaneBenchmark.percentile(sorted, 0.99), 2)) ms;"
        }
        print(line)
        let sorted = createToPublished.sorted()
        print("\(plugin): create → staged → published p50 \(format(ControlPlaneBenchmark.percentile(sorted, 0.5), 1)) ms, p99 \(format(ControlPlaneBenchmark.percentile(sorted, 0.99), 1)) ms")
        if plugin == "loopback" { try byHand(directory: directory, volumes: volumes) }
    }

    /// The peer: the same steps an operator would type (truncate, mkfs.ext4 with the plugin's
    /// flags, losetup, mount, bind mount), one shell per volume, create → published timed.
    static func byHand(directory: String, volumes: Int) throws {
        var samples: [Double] = []
        for index in 0..<volumes {
            let base = "\(directory)/hand/\(index)"
            let up = "mkdir -p \(base)/s \(base)/t && truncate -s 64M \(base)/disk.img && mkfs.ext4 -q -F -b 4096 -m 0 -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 \(base)/disk.img && L=$(losetup --find --show --nooverlap \(base)/disk.img) && mount -t ext4 $L \(base)/s && mount --bind \(base)/s \(base)/t && echo $L > \(base)/loop"
            samples.append(try measure { try shell(up) } * 1000)
            try shell("umount \(base)/t && umount \(base)/s && losetup -d $(cat \(base)/loop) && rm -rf \(base)")
        }
        samples.sort()
        print("by hand (sh: truncate, mkfs.ext4, losetup, mount, mount --bind): create → published p50 \(format(ControlPlaneBenchmark.percentile(samples, 0.5), 1)) ms, p99 \(format(ControlPlaneBenchmark.percentile(samples, 0.99), 1)) ms")
    }

    static func shell(_ line: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", line]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw PluginError(.internal, "sh -c \(line) exited \(process.terminationStatus)") }
    }

    /// A fresh claim of a loopback class and a one-replica workload mounting it, applied
    /// together; timed from the claim's create to the instance's Running event (provision,
    /// bind, stage, publish, start).
    static func claimToRunning(products: String, rounds: Int) async throws {
        guard geteuid() == 0 else { throw PluginError(.failedPrecondition, "needs root (loop devices)") }
        let server = try ServerProcess(products: products, verb: "dev")
        defer { server.stop() }
        let api = server.api
        _ = try await api.create(.storageClass(StorageClass(name: "bench", spec: StorageClassSpec(provisioner: "loopback", reclaimPolicy: .delete))))
        var samples: [Double] = []
        for round in 0..<rounds {
            let list = try await api.list(.instance)
            let events = try await api.watch(.instance, after: list.revision)
            var claim = VolumeClaimSpec(size: Quantity(value: 64 << 20, format: .binarySI))
            claim.storageClassName = "bench"
            var template = InstanceTemplate(command: ["sh", "-c", "exec sleep 1000"])
            template.volumeMounts = [VolumeMount(claim: "data-\(round)", mountPath: "/data")]
            let started = ContinuousClock.now
            _ = try await api.create(.volumeClaim(VolumeClaim(name: "data-\(round)", spec: claim)))
            _ = try await api.create(.workload(Workload(name: "bench-\(round)", spec: WorkloadSpec(replicas: 1, template: template))))
            for try await event in events {
                guard case .instance(let instance)? = event.object, instance.status.phase == .running else { continue }
                let elapsed = ContinuousClock.now - started
                samples.append(Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15)
                break
            }
            _ = try? await api.delete(.workload, "bench-\(round)")
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, let left = try? await api.list(.instance).items.count, left > 0 { try await Task.sleep(for: .milliseconds(50)) }
            _ = try? await api.delete(.volumeClaim, "data-\(round)")
        }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, let left = try? await api.list(.volume).items.count, left > 0 { try await Task.sleep(for: .milliseconds(100)) }
        samples.sort()
        print("claim created → instance Running with a loopback volume, \(rounds) times: p50 \(format(ControlPlaneBenchmark.percentile(samples, 0.5), 1)) ms, p99 \(format(ControlPlaneBenchmark.percentile(samples, 0.99), 1)) ms, max \(format(samples.last ?? 0, 1)) ms")
    }
}
