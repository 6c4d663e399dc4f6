import Foundation
import Testing

/// A stage that finds its staging mount still in place (a staging mount can outlive its
/// instances across an agent restart) must still do the file-system growth an expansion left
/// for the next stage — else the next instance gets the old file system while the volume says
/// it grew. The expansion runs without `CAP_SYS_RESOURCE` (dropped with `setpriv`), as an
/// agent that may not resize a mounted ext4 does; each call is its own `capstan plugins call`.
@Suite(.enabled(if: StorageHost.loopbackWorks && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
                "needs root, /dev/loop-control, Debian's e2fsprogs and util-linux's setpriv"))
struct LoopbackRestageTests {
    @Test func aStageOverAStagingMountLeftInPlaceGrowsThePendingFileSystem() async throws {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-loopback-restage-\(UUID().uuidString.prefix(8))")
        let staging = directory.appendingPathComponent("staging/v").path
        let capstan = PluginsCLITests.products.appendingPathComponent("capstan").path
        let plugin = PluginsCLITests.products.appendingPathComponent("libCapstanLoopback.so").path
        let call = "\(capstan) plugins call storage \(plugin) --state \(directory.appendingPathComponent("state").path)"
        defer {
            _ = try? PluginsCLITests.runShell("grep -o ' \(directory.path)[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l; for l in /sys/block/loop*/loop/backing_file; do grep -q '^\(directory.path)' $l 2>/dev/null && losetup -d /dev/$(basename $(dirname $(dirname $l))); done")
            try? FileManager.default.removeItem(at: directory)
        }
        func size() throws -> Int64 {
            Int64(try PluginsCLITests.runShell("df -B1 --output=size \(staging) | tail -1").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        _ = try PluginsCLITests.runShell("\(call) create v 16Mi && \(call) stage v \(staging)")
        let before = try size()
        #expect(before > 8 << 20 && before <= 16 << 20, "staged size \(before)")

        let expanded = try PluginsCLITests.runShell("setpriv --bounding-set -sys_resource \(call) expand v 64Mi")
        #expect(expanded.contains("67108864"), "expand answered: \(expanded)")
        #expect(try size() == before, "without CAP_SYS_RESOURCE the mounted file system waits for the next stage")

        // The staging mount is still there and nothing is published from it: stage again.
        _ = try PluginsCLITests.runShell("\(call) stage v \(staging)")
        let after = try size()
        #expect(after > 3 * before, "after the second stage the file system is \(after) bytes, was \(before)")

        _ = try PluginsCLITests.runShell("\(call) unstage v \(staging) && \(call) delete v")
    }
}
