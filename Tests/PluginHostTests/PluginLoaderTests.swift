import CapstanSDK
import Foundation
import PluginHost
import Testing

/// Every refusal of DESIGN.md section 2 rule 4, each through a real file and its exact message.
@Suite struct PluginLoaderTests {
    let directory = Fixtures.temporaryDirectory("capstan-loader")

    func inspect(_ path: String) -> LibraryReport { PluginHost.inspect(path: path, stateDirectory: directory.appendingPathComponent("state").path) }

    func refusal(_ path: String) -> LoadFailure? {
        let report = inspect(path)
        return report.failure ?? report.plugins.compactMap(\.failure).first
    }

    @Test func everyInTreePluginLoads() {
        for name in HostConfiguration.inTreePlugins {
            let report = inspect(Fixtures.plugin(name))
            #expect(report.isLoaded, "\(name): \(String(describing: report.failure))")
            #expect(report.sdkVersion == SDKVersion.string)
            #expect(report.compiler == SDKVersion.compilerVersion)
            #expect(report.sha256?.count == 64)
        }
    }

    @Test func missingFile() {
        let failure = refusal(directory.appendingPathComponent("nope.so").path)
        #expect(failure?.check == .file)
        #expect(failure?.message.hasSuffix("file does not exist") == true)
    }

    @Test func notELF() throws {
        let path = directory.appendingPathComponent("libtext.so").path
        try "just text".write(toFile: path, atomically: true, encoding: .utf8)
        let failure = refusal(path)
        #expect(failure?.check == .elf)
        #expect(failure?.message.contains("is not an ELF file") == true)
    }

    @Test func missingDependency() async throws {
        let dependency = try await Fixtures.compileC("int helper(void) { return 1; }", name: "gonedep", in: directory)
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(extra: "int helper(void); int use(void) { return helper(); }"), name: "needsdep", in: directory, extraArguments: ["-L", directory.path, "-lgonedep"])
        try FileManager.default.removeItem(atPath: dependency)
        let failure = refusal(plugin)
        #expect(failure?.check == .dlopen)
        #expect(failure?.message.contains("a library it depends on cannot be found: libgonedep.so") == true)
    }

    @Test func builtAgainstANewerSDKNamesTheMissingSymbol() async throws {
        // What a plugin built against a future SDK looks like to dlopen: a Swift symbol this host lacks.
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(extra: "extern void $s10CapstanSDK15SnapshotPlannerV4planyyF(void); void use(void) { $s10CapstanSDK15SnapshotPlannerV4planyyF(); }"), name: "newersdk", in: directory)
        let failure = refusal(plugin)
        #expect(failure?.check == .dlopen)
        #expect(failure?.message == "plugin needs 'CapstanSDK.SnapshotPlanner.plan() -> ()', which this host's libCapstanSDK.so (SDK \(SDKVersion.string)) lacks: it was built against a newer SDK; rebuild it against SDK \(SDKVersion.string) or upgrade the host")
    }

    @Test func missingEntrySymbol() async throws {
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(entry: "some_other_name"), name: "noentry", in: directory)
        let failure = refusal(plugin)
        #expect(failure?.check == .entrySymbol)
        #expect(failure?.message.hasPrefix("exports no `capstan_plugin_v1` symbol") == true)
    }

    @Test func badMagic() async throws {
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(magic: "0x12345678u"), name: "badmagic", in: directory)
        let failure = refusal(plugin)
        #expect(failure?.check == .magic)
        #expect(failure?.message.hasPrefix("bad magic 0x12345678 (expected 0x4e545343)") == true)
    }

    @Test func structTooSmall() async throws {
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(size: "8"), name: "smallstruct", in: directory)
        let failure = refusal(plugin)
        #expect(failure?.check == .structSize)
        #expect(failure?.message.hasPrefix("handshake struct is 8 bytes") == true)
    }

    @Test func sdkMajorMismatch() async throws {
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(major: 2), name: "major2", in: directory)
        let failure = refusal(plugin)
        #expect(failure?.check == .sdkMajor)
        #expect(failure?.message.hasPrefix("plugin built for SDK 2.0 but host runs SDK \(SDKVersion.string): major version mismatch") == true)
    }

    @Test func newerMinor() async throws {
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(minor: 7), name: "minor7", in: directory)
        let failure = refusal(plugin)
        #expect(failure?.check == .sdkMinor)
        #expect(failure?.message == "plugin built for SDK 1.7 is newer than host SDK \(SDKVersion.string); upgrade the host")
    }

    @Test func compilerMismatch() async throws {
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(swiftVersion: "\"6.2\""), name: "swift62", in: directory)
        let failure = refusal(plugin)
        #expect(failure?.check == .compiler)
        #expect(failure?.message.hasPrefix("plugin built with Swift 6.2 but host built with Swift \(SDKVersion.compilerVersion)") == true)
    }

    @Test func unknownKind() async throws {
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(kind: "99"), name: "kind99", in: directory)
        let failure = refusal(plugin)
        #expect(failure?.check == .kind)
        #expect(failure?.message.hasPrefix("declares unknown plugin kind 99") == true)
    }

    @Test func unsupportedKindAPIVersion() async throws {
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(apiVersion: 3), name: "api3", in: directory)
        let failure = refusal(plugin)
        #expect(failure?.check == .kind)
        #expect(failure?.message == "implements scheduler API v3 but this host serves scheduler API v1…v1")
    }

    @Test func shaMismatchRefusesBeforeLoading() throws {
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: Fixtures.plugin("CapstanBinpack"), sha256: String(repeating: "0", count: 64))], stateDirectory: directory.path)
        let report = PluginHost.load(configuration).reports[0]
        #expect(report.failure?.check == .sha256)
        #expect(report.failure?.message.hasPrefix("SHA-256 mismatch: the config pins 0000") == true)
        #expect(report.plugins.isEmpty)
    }

    @Test func matchingShaLoads() throws {
        let sha = try #require(PluginLoader.sha256(ofFileAt: Fixtures.plugin("CapstanBinpack")))
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: Fixtures.plugin("CapstanBinpack"), sha256: sha.uppercased())], stateDirectory: directory.path)
        #expect(PluginHost.load(configuration).isClean)
    }

    @Test func duplicateNameIsRefused() throws {
        // The same library from two paths registers "binpack" twice.
        let copy = directory.appendingPathComponent("libBinpackCopy.so").path
        try FileManager.default.copyItem(atPath: Fixtures.plugin("CapstanBinpack"), toPath: copy)
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: Fixtures.plugin("CapstanBinpack")), .init(path: copy)], stateDirectory: directory.path)
        let host = PluginHost.load(configuration)
        #expect(host.reports[0].isLoaded)
        let failure = host.reports[1].plugins.first?.failure
        #expect(failure?.check == .duplicateName)
        #expect(failure?.message == "a plugin named \"binpack\" is already loaded from \(Fixtures.plugin("CapstanBinpack")); plugin names must be unique")
        #expect(host.registry.entries.count == 1)
    }

    @Test func badPluginConfigNamesTheKey() throws {
        func load(_ config: JSONValue) -> LoadFailure? {
            let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: Fixtures.plugin("CapstanBinpack"), config: config)], stateDirectory: directory.path)
            return PluginHost.load(configuration).reports[0].plugins[0].failure
        }
        let outOfRange = load(.object(["resources": .object(["cpu": .int(500)])]))
        #expect(outOfRange?.check == .configuration)
        #expect(outOfRange?.message == "plugin \"binpack\" has an invalid configuration:\n  plugins[0].config.resources.cpu: weight 500 is outside 0...100")
        let unknownKey = load(.object(["resourcez": .object([:])]))
        #expect(unknownKey?.message.contains("plugins[0].config.resourcez: unknown key; expected one of: resources") == true)
        let wrongType = load(.object(["resources": .string("cpu")]))
        #expect(wrongType?.message.contains("plugins[0].config.resources: expected a map") == true)
    }

    @Test func cPluginLoadsAndRunsThroughLibffi() async throws {
        let plugin = try await Fixtures.compileC(Fixtures.handshakeSource(name: "tiny"), name: "tiny", in: directory)
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: plugin)], stateDirectory: directory.path)
        let messages = LogSink()
        let host = PluginHost.load(configuration, log: { _, message in messages.append(message) })
        #expect(host.isClean, "\(host.reports)")
        #expect(host.reports[0].compiler == "C")
        #expect(messages.lines.contains("[tiny] registering c-tiny"))
        let scheduler = try #require(host.registry.scheduler(named: "c-tiny"))
        #expect(scheduler.capabilities == SchedulerCapabilities(filters: true, scores: true))
        let unit = SchedulingUnit(name: "pod", requests: ResourceVector(cpuMilli: 1000))
        let nodes = [
            NodeSnapshot(name: "small", allocatable: ResourceVector(cpuMilli: 500, memoryBytes: 1 << 30)),
            NodeSnapshot(name: "big", allocatable: ResourceVector(cpuMilli: 4000, memoryBytes: 4 << 30)),
            NodeSnapshot(name: "half", allocatable: ResourceVector(cpuMilli: 4000, memoryBytes: 2 << 30)),
        ]
        #expect(scheduler.filter(FilterRequest(unit: unit, nodes: nodes)).map(\.isFeasible) == [false, true, true])
        #expect(scheduler.score(ScoreRequest(unit: unit, nodes: nodes)) == [25, 100, 50])
    }

    @Test func cPluginWithWrongSignatureIsRefused() async throws {
        let source = Fixtures.handshakeSource(name: "wrongsig").replacingOccurrences(of: "{\"score\", \"v(pplp)\"", with: "{\"score\", \"l(pp)\"")
        let plugin = try await Fixtures.compileC(source, name: "wrongsig", in: directory)
        let failure = refusal(plugin)
        #expect(failure?.check == .registration)
        #expect(failure?.message.contains("score has signature l(pp), expected v(pplp)") == true)
    }

    static let examplePlugin = ProcessInfo.processInfo.environment["CAPSTAN_EXAMPLE_PLUGIN"].flatMap { $0.isEmpty ? nil : $0 }

    /// CI builds Examples/custom-scheduler with its own `swift build` and points here.
    @Test(.enabled(if: examplePlugin != nil, "set CAPSTAN_EXAMPLE_PLUGIN to the built Examples/custom-scheduler .so (CI does)"))
    func exampleOutOfTreePluginLoads() throws {
        let path = try #require(Self.examplePlugin)
        let report = inspect(path)
        #expect(report.isLoaded, "\(String(describing: report.failure))")
        #expect(report.plugins.map(\.name) == ["least-gpu-waste"])
    }

    // MARK: File permissions (issue 10: a plugin runs as Capstan, so who can write it matters)

    /// A copy of an in-tree plugin in a folder of its own, with the given modes.
    func copy(fileMode: mode_t = 0o755, folderMode: mode_t = 0o755) throws -> String {
        let folder = directory.appendingPathComponent("perm-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent("libCopy.so").path
        try FileManager.default.copyItem(atPath: Fixtures.plugin("CapstanSpread"), toPath: path)
        chmod(path, fileMode)
        chmod(folder.path, folderMode)
        return path
    }

    @Test func aPluginWritableByOthersIsRefused() throws {
        for mode: mode_t in [0o775, 0o757, 0o666] {
            let failure = refusal(try copy(fileMode: mode))
            #expect(failure?.check == .permissions)
            #expect(failure?.message.contains("writable by group or others") == true && failure?.message.contains("chmod go-w") == true)
        }
        #expect(inspect(try copy(fileMode: 0o755)).isLoaded)
    }

    @Test func aPluginInAFolderOthersCanWriteIsRefusedUnlessSticky() throws {
        let failure = refusal(try copy(folderMode: 0o777))
        #expect(failure?.check == .permissions)
        #expect(failure?.message.contains("its folder") == true)
        // Sticky (like /tmp): others cannot replace a file they do not own.
        #expect(inspect(try copy(folderMode: 0o1777)).isLoaded)
    }

    @Test(.enabled(if: geteuid() == 0, "needs root to give the file to another user"))
    func aPluginOwnedByAnotherUserIsRefused() throws {
        let path = try copy()
        #expect(chown(path, 65534, 65534) == 0)
        let failure = refusal(path)
        #expect(failure?.check == .permissions)
        #expect(failure?.message.contains("owned by uid 65534") == true)
    }

    /// The hash is taken from the open file that dlopen maps: two different files loaded one
    /// after another are both loaded for what they are (glibc names a library by its
    /// /proc/self/fd path, so a reused descriptor would hand back the first).
    @Test func eachFileIsLoadedFromItsOwnDescriptor() throws {
        let spread = inspect(try copy())
        let binpack = inspect(Fixtures.plugin("CapstanBinpack"))
        #expect(spread.libraryName == "spread" && binpack.libraryName == "binpack")
        #expect(spread.sha256 == PluginLoader.sha256(ofFileAt: Fixtures.plugin("CapstanSpread")))
    }
}

final class LogSink: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []
    func append(_ line: String) { lock.withLock { stored.append(line) } }
    var lines: [String] { lock.withLock { stored } }
}

@Suite struct ExamplePluginTests {
    @Test func theCExampleBuildsAndLoads() async throws {
        let directory = Fixtures.temporaryDirectory("capstan-c-example")
        let source = try String(contentsOf: Fixtures.repository.appendingPathComponent("Examples/c-scheduler/cheapest_first.c"), encoding: .utf8)
        let library = try await Fixtures.compileC(source, name: "cheapest-first", in: directory, extraArguments: ["-Wall", "-Werror"])
        let host = PluginHost.load(HostConfiguration(pluginPaths: [directory.path], plugins: [.init(name: "cheapest-first")], defaults: [.scheduler: "cheapest-first"], stateDirectory: directory.path))
        #expect(host.isClean, "\(host.reports)")
        let scheduler = try #require(host.registry.scheduler())
        let nodes = [
            NodeSnapshot(name: "big", allocatable: ResourceVector(cpuMilli: 8000, memoryBytes: 32 << 30)),
            NodeSnapshot(name: "small", allocatable: ResourceVector(cpuMilli: 2000, memoryBytes: 8 << 30)),
        ]
        let unit = SchedulingUnit(name: "job", requests: ResourceVector(cpuMilli: 1000, memoryBytes: 1 << 30))
        #expect(scheduler.filter(FilterRequest(unit: unit, nodes: nodes)).allSatisfy { $0.isFeasible })
        #expect(scheduler.score(ScoreRequest(unit: unit, nodes: nodes)) == [0, 75])
        _ = library
    }
}
