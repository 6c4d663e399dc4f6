import AcmeStorage
import CapstanSDK
import CapstanStorageTestKit
import Foundation
import Testing

/// Acme passes the Capstan storage conformance kit, in process.
@Suite struct ConformanceTests {
    @Test(.enabled(if: geteuid() == 0, "Acme publishes with bind mounts, which need root"))
    func acmePassesTheStorageConformanceKit() async throws {
        let folder = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("acme-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: folder) }
        let pool = folder.appendingPathComponent("pool")
        let driver = try AcmeStorage(configuration: AcmeConfiguration(pool: pool.path), context: PluginContext(pluginName: "acme", stateDirectory: pool.path, nodeName: "test"))
        let report = await StorageTestKit.run(driver, options: .init(scratch: folder.appendingPathComponent("scratch"), watchedFolders: [pool]))
        for check in report.checks { #expect(check.passed, "\(check.line)") }
        #expect(report.checks.count >= 15)
    }
}
