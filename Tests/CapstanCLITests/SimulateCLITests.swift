import Foundation
import Testing

/// `capstan simulate`, run as a user runs it.
extension PluginsCLITests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Examples")

    @Test func simulatesTheProfilesExampleFromManifests() async throws {
        let example = Self.examples.appendingPathComponent("scheduling-profiles")
        let result = try await capstan("simulate", "--config", example.appendingPathComponent("capstan.yaml").path,
                                 "--nodes", example.appendingPathComponent("nodes.yaml").path,
                                 "--pods", example.appendingPathComponent("workloads.yaml").path,
                                 "--scheduler", "gpu-packing", "--seeds", "1", "--inflation", "0", "--json")
        #expect(result.status == 0, "\(result.error)")
        let summary = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
        let run = (summary?["runs"] as? [[String: Any]])?.first
        #expect(summary?["scheduler"] as? String == "gpu-packing")
        #expect(summary?["nodes"] as? Int == 6)
        // 2 trainers × 4 V100 + 12 × 250 + 6 × 500 milli-GPU = 14,000 of 20,000: everything fits.
        #expect(run?["pods"] as? Int == 28 && run?["failed"] as? Int == 0)
        #expect(run?["gpuAllocatedMilli"] as? Int == 14_000 && run?["gpuTotalMilli"] as? Int == 20_000)
    }

    @Test func simulateReportsBadInputByFileAndLine() async throws {
        let nodes = directory.appendingPathComponent("nodes.csv").path
        let pods = directory.appendingPathComponent("pods.csv").path
        try "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,131072,4,T4\n".write(toFile: nodes, atomically: true, encoding: .utf8)
        try "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,1024,1,500\np1,1000,1024,x,0\n".write(toFile: pods, atomically: true, encoding: .utf8)
        let result = try await capstan("simulate", "--nodes", nodes, "--pods", pods, "--seeds", "1")
        #expect(result.status == 2)
        #expect(result.error.contains("pods.csv:3: num_gpu \"x\" is not an integer"), "\(result.error)")

        let unknown = try await capstan("simulate", "--nodes", nodes, "--pods", pods.replacingOccurrences(of: ".csv", with: ".yaml"), "--seeds", "1")
        #expect(unknown.status == 2 && unknown.error.contains("give two CSV trace files or two manifest files"), "\(unknown.error)")

        let negative = try await capstan("simulate", "--nodes", nodes, "--pods", pods, "--inflation=-1")
        #expect(negative.status != 0 && negative.error.contains("--inflation -1.0 must be 0 or more"), "\(negative.error)")
    }

    @Test func simulateNamesTheAvailableProfilesWhenOneIsUnknown() async throws {
        let nodes = directory.appendingPathComponent("nodes.csv").path
        let pods = directory.appendingPathComponent("pods.csv").path
        try "sn,cpu_milli,memory_mib,gpu,model\nn0,32000,131072,4,T4\n".write(toFile: nodes, atomically: true, encoding: .utf8)
        try "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,1024,1,500\n".write(toFile: pods, atomically: true, encoding: .utf8)
        let result = try await capstan("simulate", "--nodes", nodes, "--pods", pods, "--scheduler", "nope", "--seeds", "1")
        #expect(result.status == 2)
        #expect(result.error.contains("no profile or scheduler plugin named \"nope\"") && result.error.contains("fgd"), "\(result.error)")
    }
}
