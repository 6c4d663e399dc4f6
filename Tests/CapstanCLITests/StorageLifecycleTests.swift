import CapstanAPI
import CapstanCore
import CapstanTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The volume lifecycle end to end, as a user drives it with the CLI against `capstan dev`:
/// StorageClasses, claim phases, real size limits (loopback), expansion, reclaim policies,
/// Immediate binding, access modes, and the refusals of bad input.
@Suite(.serialized) struct StorageLifecycleTests {
    /// A workload whose instance counts its runs in the volume, shows that writing past the
    /// size fails, then reports the file system's size every half second.
    static func counter(_ name: String, claim: String, replicas: Int = 1) -> String {
        let variable = "$CAPSTAN_VOLUME_" + claim.uppercased().replacingOccurrences(of: "-", with: "_")
        let command = #"V=\"\#(variable)\"; n=$(cat $V/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > $V/count; echo run $n; dd if=/dev/zero of=$V/fill bs=1M count=64 2>&1 | grep -o 'No space left on device'; rm -f $V/fill; while true; do echo size=$(df -B1 --output=size $V | tail -1 | tr -d ' '); sleep 0.5; done"#
        return workloadYAML(name, replicas: replicas, command: command, template: """
            volumeMounts:
              - {claim: \(claim), mountPath: /data}
        """)
    }

    static func claimYAML(_ name: String, size: String, className: String?, extra: String = "") -> String {
        """
        apiVersion: capstan.dev/v1
        kind: VolumeClaim
        metadata: {name: \(name)}
        spec:
          size: \(size)
        \(className.map { "  storageClassName: \($0)" } ?? "")
        \(extra)
        """
    }

    static func classYAML(_ name: String, provisioner: String = "loopback", reclaim: String, binding: String = "WaitForFirstConsumer", extra: String = "") -> String {
        """
        apiVersion: capstan.dev/v1
        kind: StorageClass
        metadata: {name: \(name)}
        spec:
          provisioner: \(provisioner)
          reclaimPolicy: \(reclaim)
          volumeBindingMode: \(binding)
          allowVolumeExpansion: true
          maxSize: 256Mi
        \(extra)
        """
    }

    func claim(_ cluster: DevCluster, _ name: String) async throws -> VolumeClaim {
        guard case .volumeClaim(let claim) = try await cluster.api.get(.volumeClaim, name) else { throw DevClusterError("no claim \(name)") }
        return claim
    }

    func volume(_ cluster: DevCluster, _ name: String) async throws -> Volume {
        guard case .volume(let volume) = try await cluster.api.get(.volume, name) else { throw DevClusterError("no volume \(name)") }
        return volume
    }

    /// The last `size=` line an instance logged.
    func reportedSize(_ cluster: DevCluster, _ instance: String) async throws -> Int64 {
        let lines = try await cluster.capstan("logs", instance).output.split(separator: "\n").filter { $0.hasPrefix("size=") }
        return lines.last.flatMap { Int64($0.dropFirst(5)) } ?? 0
    }

    /// Loop devices and mounts a failed test left under the cluster's folder.
    static func release(_ cluster: DevCluster) {
        let root = cluster.dataDirectory.path
        _ = try? PluginsCLITests.runShell("grep -o ' \(root)[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l; for l in /sys/block/loop*/loop/backing_file; do grep -q '^\(root)' $l 2>/dev/null && losetup -d /dev/$(basename $(dirname $(dirname $l))); done")
    }

    @Test(.enabled(if: StorageHost.loopbackWorks, "needs root, /dev/loop-control and Debian's e2fsprogs"))
    func aLoopbackVolumeHasARealSizeGrowsKeepsItsDataAndIsRetained() async throws {
        let cluster = try DevCluster()
        defer { Self.release(cluster) }
        try await withDevCluster(cluster) { cluster in
            func stateful(_ size: String) throws -> String {
                try cluster.manifest("stateful.yaml", [Self.classYAML("fast", reclaim: "Retain"), Self.claimYAML("data", size: size, className: "fast"), Self.counter("kv", claim: "data")].joined(separator: "\n---\n"))
            }
            var manifests = try stateful("16Mi")
            let applied = try await cluster.capstan("apply", "-f", manifests, "--wait", "--timeout", "60")
            #expect(applied.status == 0, "\(applied.output)\(applied.error)")
            let first = try #require(try await cluster.instances(of: "kv").first).metadata.name
            try await eventually("the first run counts 1 and hits ENOSPC", timeout: 15) {
                let logs = try await cluster.capstan("logs", first).output
                return logs.contains("run 1") && logs.contains("No space left on device") && logs.contains("size=")
            }
            let bound = try await claim(cluster, "data")
            #expect(bound.status.phase == .bound)
            #expect(bound.status.capacity == (try Quantity(parsing: "16Mi")))
            let volumeName = try #require(bound.spec.volumeName)
            let provisioned = try await volume(cluster, volumeName)
            #expect(provisioned.spec.provisioner == "loopback" && provisioned.spec.reclaimPolicy == .retain && provisioned.spec.storageClassName == "fast")
            #expect(provisioned.status.phase == .bound)
            let table = try await cluster.capstan("get", "vc")
            #expect(table.output.contains("Bound") && table.output.contains(volumeName) && table.output.contains("RWO") && table.output.contains("fast"), "\(table.output)")
            let before = try await reportedSize(cluster, first)
            #expect(before > 8 << 20 && before <= 16 << 20, "size \(before)")

            // Bad input is refused and changes nothing.
            let shrink = try await cluster.capstan("apply", "-f", try cluster.manifest("shrink.yaml", Self.claimYAML("data", size: "8Mi", className: "fast")))
            #expect(shrink.status != 0 && shrink.error.contains("spec.size") && shrink.error.contains("cannot shrink"), "\(shrink.error)")
            let huge = try await cluster.capstan("apply", "-f", try cluster.manifest("huge.yaml", Self.claimYAML("data", size: "1Gi", className: "fast")))
            #expect(huge.status != 0 && huge.error.contains("maxSize 256Mi"), "\(huge.error)")
            #expect(try await claim(cluster, "data").spec.size == (try Quantity(parsing: "16Mi")))

            // Kill -9: the restarted run finds its count.
            kill(try await cluster.pid(of: first), SIGKILL)
            try await eventually("the restarted run counts 2", timeout: 20) { try await cluster.capstan("logs", first).output.contains("run 2") }

            // Expansion: the claim grows; the instance sees the bigger file system, online when
            // the agent may resize a mounted ext4 (CAP_SYS_RESOURCE), else at the next stage.
            manifests = try stateful("64Mi")
            #expect(try await cluster.capstan("apply", "-f", manifests).status == 0)
            var resized: Condition?
            try await eventually("the volume reports the expansion", timeout: 20) {
                resized = try await volume(cluster, volumeName).status.conditions.first { $0.type == "Resized" }
                return resized != nil
            }
            if resized?.status == true {
                try await eventually("the running instance sees the bigger file system", timeout: 20) { try await reportedSize(cluster, first) > 3 * before }
            } else {
                #expect(resized?.reason == "FileSystemResizePending", "\(String(describing: resized))")
            }
            // The claim follows its volume (the volume controller copies the capacity over).
            let grownSize = try Quantity(parsing: "64Mi")
            try await eventually("the claim reports the new capacity", timeout: 20) { try await claim(cluster, "data").status.capacity == grownSize }

            // Server and agent restart: the instance is re-adopted, still counting 2.
            cluster.stop()
            try await cluster.start()
            try await eventually("the instance runs again after the restart", timeout: 20) { try await cluster.instance(first).status.phase == .running }

            // Delete and re-create the workload: the claim (Retain) keeps the data.
            #expect(try await cluster.capstan("delete", "workload", "kv").status == 0)
            try await eventually("the instance is gone", timeout: 20) { try await cluster.instances(of: "kv").isEmpty }
            #expect(try await cluster.capstan("apply", "-f", manifests, "--wait", "--timeout", "60").status == 0)
            let second = try #require(try await cluster.instances(of: "kv").first).metadata.name
            try await eventually("the new instance counts 3", timeout: 15) { try await cluster.capstan("logs", second).output.contains("run 3") }
            do {
                try await eventually("the new instance sees the grown file system", timeout: 30) { try await reportedSize(cluster, second) > 3 * before }
            } catch {
                // What the instance printed and what the volume says, for whoever reads a failure.
                let logs = (try? await cluster.capstan("logs", second).output) ?? "?"
                let conditions = (try? await volume(cluster, volumeName).status.conditions) ?? []
                Issue.record("the new instance's logs: \(logs.suffix(600))\nthe volume's conditions: \(conditions)")
                throw error
            }
            let grown = try await volume(cluster, volumeName)
            #expect(grown.status.conditions.first { $0.type == "Resized" }?.status == true)

            // Delete the claim: Retain keeps the volume (Released) and its image.
            #expect(try await cluster.capstan("delete", "workload", "kv").status == 0)
            try await eventually("the instance is gone", timeout: 20) { try await cluster.instances(of: "kv").isEmpty }
            let refused = try await cluster.capstan("delete", "volume", volumeName)
            #expect(refused.status != 0 && refused.error.contains("bound to VolumeClaim \"data\""), "\(refused.error)")
            #expect(try await cluster.capstan("delete", "volumeclaim", "data").status == 0)
            try await eventually("the volume is Released", timeout: 10) { try await volume(cluster, volumeName).status.phase == .released }
            let image = cluster.dataDirectory.appendingPathComponent(".capstan/plugins/loopback/volumes/\(volumeName)/disk.img").path
            #expect(FileManager.default.fileExists(atPath: image))

            // A new claim naming the released volume takes its data over.
            let reclaim = try cluster.manifest("reclaim.yaml", Self.claimYAML("again", size: "64Mi", className: "fast", extra: "  volumeName: \(volumeName)") + "\n---\n" + Self.counter("kv2", claim: "again"))
            #expect(try await cluster.capstan("apply", "-f", reclaim, "--wait", "--timeout", "60").status == 0)
            let third = try #require(try await cluster.instances(of: "kv2").first).metadata.name
            try await eventually("the data is there for the new claim: run 4", timeout: 15) { try await cluster.capstan("logs", third).output.contains("run 4") }
            #expect(try await claim(cluster, "again").status.phase == .bound)
            #expect(try await cluster.capstan("delete", "workload", "kv2").status == 0)
            try await eventually("the instance is gone", timeout: 20) { try await cluster.instances(of: "kv2").isEmpty }
            let left = try PluginsCLITests.runShell("losetup -a | grep -c '\(cluster.dataDirectory.path)' || true").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(left == "0", "loop devices left attached after every instance stopped: \(left)")
        }
    }

    @Test(.enabled(if: StorageHost.loopbackWorks, "needs root, /dev/loop-control and Debian's e2fsprogs"))
    func deleteReclaimRemovesTheDataAndImmediateBindsWithoutAnInstance() async throws {
        let cluster = try DevCluster()
        defer { Self.release(cluster) }
        try await withDevCluster(cluster) { cluster in
            let manifests = try cluster.manifest("scratch.yaml", [Self.classYAML("scratch", reclaim: "Delete", binding: "Immediate"), Self.claimYAML("tmp", size: "16Mi", className: "scratch")].joined(separator: "\n---\n"))
            #expect(try await cluster.capstan("apply", "-f", manifests).status == 0)
            try await eventually("the claim binds with no instance", timeout: 20) { try await claim(cluster, "tmp").status.phase == .bound }
            let bound = try await claim(cluster, "tmp")
            #expect(bound.metadata.annotations["capstan.dev/selected-node"] == "e2e")
            let volumeName = try #require(bound.spec.volumeName)
            let folder = cluster.dataDirectory.appendingPathComponent(".capstan/plugins/loopback/volumes/\(volumeName)").path
            #expect(FileManager.default.fileExists(atPath: folder))
            #expect(try await cluster.capstan("delete", "volumeclaim", "tmp").status == 0)
            try await eventually("the volume object goes", timeout: 20) { (try? await cluster.api.get(.volume, volumeName)) == nil }
            #expect(!FileManager.default.fileExists(atPath: folder), "reclaim policy Delete left the data at \(folder)")
            let events = try await cluster.capstan("get", "events").output
            #expect(events.contains("Reclaimed") && events.contains(volumeName), "\(events)")
        }
    }

    @Test(.enabled(if: StorageHost.loopbackWorks, "needs root, /dev/loop-control and Debian's e2fsprogs"))
    func aSnapshotRestoresTheDataItSawIntoANewClaim() async throws {
        let cluster = try DevCluster()
        defer { Self.release(cluster) }
        try await withDevCluster(cluster) { cluster in
            // A writer that records its run in the volume, then keeps running.
            let writer = workloadYAML("writer", replicas: 1, command: #"echo first > $CAPSTAN_VOLUME_ORIGIN/data; sync; exec sleep 1000"#, template: "    volumeMounts:\n      - {claim: origin, mountPath: /data}")
            let manifests = [Self.classYAML("snap", reclaim: "Delete"), Self.claimYAML("origin", size: "16Mi", className: "snap"), writer]
            #expect(try await cluster.capstan("apply", "-f", try cluster.manifest("origin.yaml", manifests.joined(separator: "\n---\n")), "--wait", "--timeout", "60").status == 0)
            let image = cluster.dataDirectory.appendingPathComponent(".capstan/plugins/loopback")
            try await eventually("the writer wrote", timeout: 10) {
                let published = try await cluster.instances(of: "writer").first.map { cluster.dataDirectory.appendingPathComponent(".capstan/volumes/\($0.metadata.name)/origin/data").path }
                return published.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } == "first\n"
            }
            // A snapshot of the claim, taken while the writer runs (frozen for the copy).
            let snapshot = "apiVersion: capstan.dev/v1\nkind: VolumeSnapshot\nmetadata: {name: before}\nspec: {source: origin}\n"
            #expect(try await cluster.capstan("apply", "-f", try cluster.manifest("snapshot.yaml", snapshot)).status == 0)
            try await eventually("the snapshot is ready", timeout: 20) {
                guard case .volumeSnapshot(let taken) = try await cluster.api.get(.volumeSnapshot, "before") else { return false }
                return taken.status.readyToUse
            }
            let listed = try await cluster.capstan("get", "volumesnapshots", "-o", "wide")
            #expect(listed.output.contains("before") && listed.output.contains("true") && listed.output.contains("origin"), "\(listed.output)")
            // The original changes after the snapshot.
            let name = try #require(try await cluster.instances(of: "writer").first).metadata.name
            try "second\n".write(toFile: cluster.dataDirectory.appendingPathComponent(".capstan/volumes/\(name)/origin/data").path, atomically: false, encoding: .utf8)
            // A claim restored from it, smaller than the snapshot: refused, naming the size.
            let small = try await cluster.capstan("apply", "-f", try cluster.manifest("small.yaml", Self.claimYAML("copy", size: "8Mi", className: "snap", extra: "  dataSource: {kind: VolumeSnapshot, name: before}")))
            #expect(small.status != 0 && small.error.contains("smaller than VolumeSnapshot"), "\(small.error)")
            let reader = workloadYAML("reader", replicas: 1, command: #"cat $CAPSTAN_VOLUME_COPY/data; exec sleep 1000"#, template: "    volumeMounts:\n      - {claim: copy, mountPath: /data}")
            let restore = [Self.claimYAML("copy", size: "16Mi", className: "snap", extra: "  dataSource: {kind: VolumeSnapshot, name: before}"), reader]
            #expect(try await cluster.capstan("apply", "-f", try cluster.manifest("restore.yaml", restore.joined(separator: "\n---\n")), "--wait", "--timeout", "60").status == 0)
            let restored = try #require(try await cluster.instances(of: "reader").first).metadata.name
            try await eventually("the restored volume holds the data at snapshot time", timeout: 15) {
                try await cluster.capstan("logs", restored).output.contains("first")
            }
            #expect(!(try await cluster.capstan("logs", restored).output.contains("second")))
            // Deleting the snapshot removes the plugin's copy.
            let copies = { (try? FileManager.default.contentsOfDirectory(atPath: image.appendingPathComponent("snapshots").path)) ?? [] }
            #expect(copies().count == 1)
            #expect(try await cluster.capstan("delete", "volumesnapshot", "before").status == 0)
            try await eventually("the snapshot and its copy are gone", timeout: 20) {
                (try? await cluster.api.get(.volumeSnapshot, "before")) == nil && copies().isEmpty
            }
            for workload in ["writer", "reader"] { _ = try await cluster.capstan("delete", "workload", workload) }
            try await eventually("the instances are gone", timeout: 20) { try await cluster.api.list(.instance).items.isEmpty }
        }
    }

    /// A runc container gets a loopback volume bind-mounted at its mountPath: the size limit
    /// holds inside the container (ENOSPC), a read-only mount cannot be written, and the data
    /// outlives the container.
    @Test(.enabled(if: StorageHost.loopbackWorks && RuncControlPlaneTests.canRun, "needs root, loop devices, e2fsprogs, runc and busybox-static"))
    func aRuncContainerSeesItsVolumeAtItsMountPathWithItsSize() async throws {
        let cluster = try DevCluster()
        defer { Self.release(cluster) }
        let rootfs = cluster.dataDirectory.appendingPathComponent("rootfs").path
        let build = Process()
        build.executableURL = URL(fileURLWithPath: "/bin/sh")
        build.arguments = [PluginsCLITests.products.appendingPathComponent("../../../Examples/busybox-rootfs/build-rootfs.sh").standardizedFileURL.path, rootfs]
        build.standardOutput = FileHandle.nullDevice
        try build.run()
        let built = await exitStatus(of: build)
        try #require(built == 0, "build-rootfs.sh failed")
        try await withDevCluster(cluster) { cluster in
            let command = #"n=$(cat /data/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/count; echo run $n; dd if=/dev/zero of=/data/fill bs=1M count=64 2>&1 | grep -o 'No space left on device'; rm -f /data/fill; echo x > /ro/x 2>&1 || echo read-only refused; exec sleep 1000"#
            let workload = workloadYAML("boxed", replicas: 1, command: command, template: """
                runtime: runc
                image: \(rootfs)
                volumeMounts:
                  - {claim: box-data, mountPath: /data}
                  - {claim: box-data, mountPath: /ro, readOnly: true}
            """)
            let manifests = [Self.classYAML("boxes", reclaim: "Delete"), Self.claimYAML("box-data", size: "16Mi", className: "boxes"), workload]
            let applied = try await cluster.capstan("apply", "-f", try cluster.manifest("boxed.yaml", manifests.joined(separator: "\n---\n")), "--wait", "--timeout", "60")
            #expect(applied.status == 0, "\(applied.output)\(applied.error)")
            let name = try #require(try await cluster.instances(of: "boxed").first).metadata.name
            try await eventually("the container counts, hits ENOSPC and cannot write the read-only mount", timeout: 15) {
                let logs = try await cluster.capstan("logs", name).output
                return logs.contains("run 1") && logs.contains("No space left on device") && logs.contains("read-only refused")
            }
            kill(try await cluster.pid(of: name), SIGKILL)
            try await eventually("the restarted container finds its count", timeout: 20) { try await cluster.capstan("logs", name).output.contains("run 2") }
            #expect(try await cluster.capstan("delete", "workload", "boxed").status == 0)
            try await eventually("the container is gone", timeout: 30) { try await cluster.instances(of: "boxed").isEmpty }
        }
    }

    @Test func badClaimsSayWhyAndChangeNothing() async throws {
        try await withDevCluster { cluster in
            // An unknown class: the claim stays Pending with a condition naming it.
            #expect(try await cluster.capstan("apply", "-f", try cluster.manifest("orphan.yaml", Self.claimYAML("orphan", size: "8Mi", className: "nonexistent"))).status == 0)
            try await eventually("the claim says its class is missing", timeout: 10) {
                try await claim(cluster, "orphan").status.conditions.contains { $0.reason == "ClassNotFound" && $0.message.contains("nonexistent") }
            }
            #expect(try await claim(cluster, "orphan").status.phase == .pending)
            let wide = try await cluster.capstan("get", "vc", "orphan", "-o", "wide")
            #expect(wide.output.contains("ClassNotFound"), "\(wide.output)")
            // Parameters the plugin rejects: the instance and the claim say which.
            let manifests = [Self.classYAML("odd", provisioner: "hostpath", reclaim: "Delete", extra: "  parameters: {speed: warp}"), Self.claimYAML("odd-data", size: "8Mi", className: "odd"), Self.counter("odd", claim: "odd-data")]
            #expect(try await cluster.capstan("apply", "-f", try cluster.manifest("odd.yaml", manifests.joined(separator: "\n---\n"))).status == 0)
            try await eventually("the claim's events name the rejected parameter", timeout: 20) {
                let events = try await cluster.capstan("get", "events").output
                return events.contains("ProvisioningFailed") && events.contains("parameter \"speed\"")
            }
            #expect(try await claim(cluster, "odd-data").spec.volumeName == nil)
            // A bad access-mode list is refused at the door, naming the field.
            let bad = try await cluster.capstan("apply", "-f", try cluster.manifest("modes.yaml", Self.claimYAML("modes", size: "8Mi", className: nil, extra: "  accessModes: []")))
            #expect(bad.status != 0 && bad.error.contains("spec.accessModes"), "\(bad.error)")
            let unknown = try await cluster.capstan("apply", "-f", try cluster.manifest("modes2.yaml", Self.claimYAML("modes", size: "8Mi", className: nil, extra: "  accessModes: [ReadWriteSometimes]")))
            #expect(unknown.status != 0 && unknown.error.contains("accessModes"), "\(unknown.error)")
        }
    }

    @Test func aReadWriteOncePodClaimServesOneInstanceAtATime() async throws {
        try await withDevCluster { cluster in
            let manifests = [Self.claimYAML("solo", size: "8Mi", className: nil, extra: "  accessModes: [ReadWriteOncePod]"),
                             workloadYAML("solo", replicas: 2, command: "exec sleep 1000", template: "    volumeMounts:\n      - {claim: solo, mountPath: /data}")]
            #expect(try await cluster.capstan("apply", "-f", try cluster.manifest("solo.yaml", manifests.joined(separator: "\n---\n"))).status == 0)
            try await eventually("one instance runs, the other waits naming the access mode", timeout: 20) {
                let instances = try await cluster.instances(of: "solo")
                let running = instances.filter { $0.status.phase == .running }
                let waiting = instances.filter { $0.spec.nodeName == nil && ($0.status.message ?? "").contains("ReadWriteOncePod") }
                return running.count == 1 && waiting.count == 1
            }
        }
    }
}
