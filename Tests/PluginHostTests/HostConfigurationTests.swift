import CapstanSDK
import Foundation
import PluginHost
import Testing

@Suite struct HostConfigurationTests {
    let directory = Fixtures.temporaryDirectory("capstan-config")

    func problems(_ yaml: String) -> [String] {
        do {
            _ = try HostConfiguration.parse(yaml, source: "capstan.yaml", baseDirectory: directory.path)
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    @Test func parsesAndResolvesRelativePaths() throws {
        let configuration = try HostConfiguration.parse("""
        apiVersion: capstan.dev/v1
        kind: Config
        pluginPaths: [plugins, /opt/capstan]
        stateDirectory: state
        plugins:
          - name: CapstanBinpack
            config: {resources: {cpu: 2}}
          - path: vendor/libacme.so
            sha256: \(String(repeating: "ab", count: 32))
        defaults:
          scheduler: binpack
        """, source: "capstan.yaml", baseDirectory: directory.path)
        #expect(configuration.pluginPaths == [directory.appendingPathComponent("plugins").path, "/opt/capstan"])
        #expect(configuration.plugins[1].path == directory.appendingPathComponent("vendor/libacme.so").path)
        #expect(configuration.plugins[0].config == .object(["resources": .object(["cpu": .int(2)])]))
        #expect(configuration.defaults == [.scheduler: "binpack"])
        #expect(configuration.stateDirectory == directory.appendingPathComponent("state").path)
    }

    @Test func unknownKeyIsNamed() {
        #expect(problems("plugin:\n  - name: x\n") == ["plugin: unknown key; expected one of: apiVersion, defaults, kind, pluginPaths, plugins, profiles, stateDirectory, storageClasses"])
        #expect(problems("plugins:\n  - name: x\n    sha: abc\n") == ["plugins[0].sha: unknown key; expected one of: config, name, path, sha256"])
    }

    @Test func wrongTypeIsNamed() {
        let found = problems("pluginPaths: 7\n")
        #expect(found.count == 1 && found[0].hasPrefix("pluginPaths: expected a list"))
    }

    @Test func malformedYAMLIsReported() {
        let found = problems("plugins: [\n  - name: x\n")
        #expect(found.count == 1 && found[0].contains("is not valid YAML"))
    }

    @Test func semanticProblemsAreAllListed() {
        let found = problems("""
        apiVersion: v2
        plugins:
          - {}
          - {name: a, path: /b.so}
          - {name: c, sha256: xyz}
        defaults:
          schedular: binpack
        """)
        #expect(found == [
            "apiVersion: \"v2\" is not supported; use capstan.dev/v1",
            "plugins[0]: needs `name` (a file on pluginPaths) or `path`",
            "plugins[1]: has both `name` and `path`; give one",
            "plugins[2].sha256: \"xyz\" is not a SHA-256 (64 hex digits; `capstan plugins inspect FILE` prints it)",
            "defaults.schedular: is not a plugin kind; expected one of scheduler, storage, network, loadbalancer, runtime",
        ])
    }

    @Test func defaultNamingAnUnloadedPluginIsAProblem() {
        let configuration = HostConfiguration(pluginPaths: [Fixtures.products], plugins: [.init(name: "CapstanBinpack")], defaults: [.scheduler: "spread", .storage: "binpack"], stateDirectory: directory.path)
        let host = PluginHost.load(configuration)
        #expect(!host.isClean)
        #expect(host.problems.map(\.description) == [
            "defaults.scheduler: \"spread\" is not loaded; loaded scheduler plugins: binpack",
            "defaults.storage: \"binpack\" is a scheduler plugin, not a storage plugin",
        ])
    }

    @Test func profilesAreParsedAndChecked() throws {
        let configuration = try HostConfiguration.parse("""
        pluginPaths: [\(Fixtures.products)]
        plugins: [{name: CapstanFGD}, {name: CapstanBestFit}]
        profiles:
          - name: gpu-sharing
            percentageOfNodesToScore: 100
            plugins: [{name: fgd, weight: 100}, {name: bestfit}]
          - name: broken
            plugins: [{name: spread}]
        defaults: {scheduler: gpu-sharing}
        """, source: "capstan.yaml", baseDirectory: directory.path)
        #expect(configuration.profiles[0] == HostConfiguration.Profile(name: "gpu-sharing", plugins: [.init(name: "fgd", weight: 100), .init(name: "bestfit", weight: 1)], percentageOfNodesToScore: 100))
        let host = PluginHost.load(configuration)
        #expect(host.problems.map(\.description) == ["profiles[1].plugins[0].name: \"spread\" is not a loaded scheduler plugin"])
        let profile = try #require(host.schedulingProfile())
        #expect(profile.name == "gpu-sharing" && profile.entries.map(\.name) == ["fgd", "bestfit"] && profile.entries.map(\.weight) == [100, 1])
        #expect(host.schedulingProfile(named: "bestfit")?.entries.map(\.name) == ["bestfit"])
        #expect(host.schedulingProfile(named: "nope") == nil)
        #expect(problems("profiles:\n  - name: p\n    plugins: [{name: fgd, weight: 500}]\n    percentageOfNodesToScore: 0\n") == [
            "profiles[0].plugins[0].weight: 500 is outside 0...100",
            "profiles[0].percentageOfNodesToScore: 0 is outside 1...100",
        ])
    }

    @Test func pluginNotOnSearchPathSaysWhereItLooked() {
        let configuration = HostConfiguration(pluginPaths: [directory.path], plugins: [.init(name: "acme")], stateDirectory: directory.path)
        let report = PluginHost.load(configuration).reports[0]
        #expect(report.failure?.check == .file)
        #expect(report.failure?.message == "plugin \"acme\" not found: looked for acme, libacme.so, acme.so in pluginPaths \(directory.path)")
    }

    @Test func builtInConfigurationLoadsEveryInTreePlugin() {
        let host = PluginHost.load(HostConfiguration.builtIn(executableDirectory: Fixtures.products, stateDirectory: directory.path))
        let names = ["bestfit", "binpack", "cni", "fgd", "host", "hostpath", "leastconn", "nftables", "process", "roundrobin", "runc", "spread"]
        if access("/dev/loop-control", R_OK | W_OK) == 0 {
            #expect(host.isClean, "\(host.reports.compactMap(\.failure))")
            #expect(host.registry.entries.map(\.name).sorted() == (names + ["loopback"]).sorted())
        } else {
            // Without loop devices (not root) only loopback is refused, and says why.
            let refusals = host.reports.flatMap { $0.plugins.compactMap(\.failure) }.map(\.message)
            #expect(refusals.count == 1 && refusals[0].contains("needs root and /dev/loop-control"), "\(refusals)")
            #expect(host.registry.entries.map(\.name).sorted() == names)
        }
        #expect(host.registry.scheduler() != nil && host.registry.runtime() != nil)
    }

    @Test func storageClassesComeFromTheConfigAndBadOnesAreNamed() throws {
        let configuration = try HostConfiguration.parse("""
            storageClasses:
              fast: {provisioner: loopback, reclaimPolicy: Retain, allowVolumeExpansion: true, maxSize: 10Gi}
              cheap: {provisioner: hostpath}
            """, source: "capstan.yaml", baseDirectory: directory.path)
        #expect(configuration.storageClasses.keys.sorted() == ["cheap", "fast"])
        #expect(configuration.storageClasses["fast"]?.effectiveReclaimPolicy == .retain)
        #expect(configuration.storageClasses["cheap"]?.effectiveReclaimPolicy == .delete)
        let bad = problems("""
            storageClasses:
              Bad_Name: {provisioner: hostpath}
              big: {provisioner: hostpath, maxSize: 0}
            """)
        #expect(bad.contains { $0.contains("storageClasses.Bad_Name") }, "\(bad)")
        #expect(bad.contains { $0.contains("storageClasses.big.maxSize") }, "\(bad)")
        #expect(!problems("storageClasses:\n  x: {provisioner: hostpath, recycle: true}\n").isEmpty)
    }
}
