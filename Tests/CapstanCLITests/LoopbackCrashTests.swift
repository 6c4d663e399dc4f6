import Foundation
import Testing

/// The loopback storage plugin after a crash in the middle of any call: each call runs in a
/// process of its own (`capstan plugins call storage`), the failpoint ends that process at one
/// step (exit 137, as `kill -9` of the agent would), the same call is made again, and the
/// volume's whole life is then played to the end. Nothing may leak: no loop device, no mount,
/// no image, no folder.
@Suite(.serialized, .enabled(if: StorageHost.loopbackWorks, "needs root, /dev/loop-control and Debian's e2fsprogs"))
struct LoopbackCrashTests {
    let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-loopback-crash-\(UUID().uuidString.prefix(8))")
    var plugin: String { PluginsCLITests.products.appendingPathComponent("libCapstanLoopback.so").path }

    /// A volume's life, one call per step, and the failpoints inside each call.
    var life: [(call: [String], failpoints: [String])] {
        let staging = directory.appendingPathComponent("staging/v").path
        let target = directory.appendingPathComponent("targets/i/v").path
        return [
            (["create", "v", "16Mi"], ["create.image", "create.mkfs", "create.record"]),
            (["stage", "v", staging], ["stage.attach", "stage.mount"]),
            (["publish", "v", target, staging], ["publish.bind"]),
            (["expand", "v", "32Mi"], ["expand.truncate", "expand.resize"]),
            (["snapshot", "s", "v"], ["snapshot.copy"]),
            (["create", "r", "32Mi", "s"], ["create.copy", "create.record"]),
            (["delete", "r"], ["delete.detach", "delete.remove"]),
            (["delete-snapshot", "s"], []),
            (["unpublish", "v", target], ["unpublish.umount"]),
            (["unstage", "v", staging], ["unstage.umount", "unstage.detach"]),
            (["delete", "v"], ["delete.detach", "delete.remove"]),
        ]
    }

    func call(_ arguments: [String], failpoint: String? = nil) async throws -> PluginsCLITests.Result {
        try await PluginsCLITests.run(["plugins", "call", "storage", plugin, "--state", directory.appendingPathComponent("state").path] + arguments,
                                      in: FileManager.default.temporaryDirectory, environment: failpoint.map { ["CAPSTAN_LOOPBACK_FAILPOINT": $0] } ?? [:])
    }

    /// Everything under the test's folder the plugin could have left: files, mounts, loop devices.
    func leftovers() throws -> [String] {
        let root = directory.path
        var found: [String] = []
        let mountinfo = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        found += mountinfo.split(separator: "\n").map { $0.split(separator: " ")[4] }.filter { $0.hasPrefix(root) }.map { "mount \($0)" }
        for name in try FileManager.default.contentsOfDirectory(atPath: "/sys/block") where name.hasPrefix("loop") {
            if let backing = try? String(contentsOfFile: "/sys/block/\(name)/loop/backing_file", encoding: .utf8), backing.hasPrefix(root) {
                found.append("loop device /dev/\(name) → \(backing.trimmingCharacters(in: .newlines))")
            }
        }
        let state = directory.appendingPathComponent("state/plugins/loopback")
        for folder in ["volumes", "snapshots"] {
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: state.appendingPathComponent(folder).path)) ?? [] { found.append("\(folder)/\(entry)") }
        }
        return found
    }

    func cleanUp() {
        // Best effort, for a failed run: unmount, detach, remove.
        _ = try? PluginsCLITests.runShell("grep -o ' \(directory.path)[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l; for l in /sys/block/loop*/loop/backing_file; do grep -q '^\(directory.path)' $l 2>/dev/null && losetup -d /dev/$(basename $(dirname $(dirname $l))); done")
        try? FileManager.default.removeItem(at: directory)
    }

    @Test func everyCallConvergesAfterACrashAtEachStep() async throws {
        defer { cleanUp() }
        var crashes = 0
        for (index, step) in life.enumerated() {
            for failpoint in step.failpoints {
                // The life up to this call, then the call with the failpoint.
                for earlier in life[..<index] {
                    let result = try await call(earlier.call)
                    try #require(result.status == 0, "before \(failpoint): \(earlier.call.joined(separator: " ")): \(result.error)")
                }
                let crashed = try await call(step.call, failpoint: failpoint)
                try #require(crashed.status == 137, "\(failpoint): the call did not stop at the failpoint (exit \(crashed.status)): \(crashed.error)")
                crashes += 1
                // The same call again converges, and the rest of the life runs.
                for later in life[index...] {
                    let result = try await call(later.call)
                    #expect(result.status == 0, "after a crash at \(failpoint): \(later.call.joined(separator: " ")): \(result.error)")
                }
                let left = try leftovers()
                #expect(left.isEmpty, "after a crash at \(failpoint): \(left)")
            }
        }
        #expect(crashes == life.map(\.failpoints.count).reduce(0, +))
    }

    @Test func theSizeIsEnforcedAndExpansionIsVisibleAfterTheNextStage() async throws {
        defer { cleanUp() }
        let staging = directory.appendingPathComponent("staging/v").path
        let target = directory.appendingPathComponent("targets/i/v").path
        for arguments in [["create", "v", "16Mi"], ["stage", "v", staging], ["publish", "v", target, staging]] {
            let result = try await call(arguments)
            try #require(result.status == 0, "\(arguments): \(result.error)")
        }
        // 16 MiB of data does not fit in a 16 MiB volume: dd stops with ENOSPC.
        let full = try PluginsCLITests.runShell("dd if=/dev/zero of=\(target)/fill bs=1M count=32 2>&1; echo status=$?")
        #expect(full.contains("No space left on device") && full.contains("status=1"), "\(full)")
        try FileManager.default.removeItem(atPath: target + "/fill")
        let before = try PluginsCLITests.runShell("df -B1 --output=size \(target) | tail -1").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await call(["expand", "v", "64Mi"]).status == 0)
        var after = try PluginsCLITests.runShell("df -B1 --output=size \(target) | tail -1").trimmingCharacters(in: .whitespacesAndNewlines)
        if after == before {
            // No CAP_SYS_RESOURCE here (ext4's online resize needs it, even for root): the file
            // system grows at the next stage.
            for arguments in [["unpublish", "v", target], ["unstage", "v", staging], ["stage", "v", staging], ["publish", "v", target, staging]] {
                #expect(try await call(arguments).status == 0)
            }
            after = try PluginsCLITests.runShell("df -B1 --output=size \(target) | tail -1").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect((Int64(after) ?? 0) > 3 * (Int64(before) ?? .max), "size \(before) → \(after)")
        for arguments in [["unpublish", "v", target], ["unstage", "v", staging], ["delete", "v"]] {
            #expect(try await call(arguments).status == 0)
        }
        let left = try leftovers()
        #expect(left.isEmpty, "\(left)")
    }
}
