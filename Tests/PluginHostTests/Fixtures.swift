import Foundation
import Testing

/// Where the built plugins are, and how to make fixture libraries for the refusal tests.
enum Fixtures {
    /// The build folder: the test binary sits beside the plugin .so files `swift build` made.
    static let products: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // swift test runs .build/<triple>/debug/CapstanPackageTests.xctest
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("libCapstanSDK.so").path), url.path != "/" {
            url.deleteLastPathComponent()
        }
        return url.path
    }()

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let includeDirectory = repository.appendingPathComponent("Sources/CapstanSDK/Sources/CCapstanPluginABI/include").path

    static func plugin(_ name: String) -> String { "\(products)/lib\(name).so" }

    /// A fresh temporary folder.
    static func temporaryDirectory(_ label: String = "capstan-test") -> URL {
        let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("\(label)-\(UUID().uuidString.prefix(8))")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Compiles C source into a shared library with the system compiler.
    static func compileC(_ source: String, name: String, in directory: URL, extraArguments: [String] = []) async throws -> String {
        let sourceFile = directory.appendingPathComponent("\(name).c")
        try source.write(to: sourceFile, atomically: true, encoding: .utf8)
        let output = directory.appendingPathComponent("lib\(name).so").path
        try await run("/usr/bin/cc", ["-shared", "-fPIC", "-o", output, "-I", includeDirectory, sourceFile.path] + extraArguments)
        return output
    }

    /// Runs a program, failing with its output when it fails. It waits on a thread of its own:
    /// a compiler or an image build blocking one of the two threads every test's async code
    /// shares here stalls the timings of unrelated tests (a 0.5 s grace period seen as 5 s).
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], in directory: URL? = nil, environment: [String: String]? = nil) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result { try runBlocking(executable, arguments, in: directory, environment: environment) })
            }.start()
        }
    }

    /// ``run(_:_:in:environment:)`` on the calling thread, for clean-ups that cannot wait
    /// (a `defer`); keep it to commands that end at once.
    @discardableResult
    static func runBlocking(_ executable: String, _ arguments: [String], in directory: URL? = nil, environment: [String: String]? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = directory }
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw CommandFailure(command: ([executable] + arguments).joined(separator: " "), status: process.terminationStatus, output: text)
        }
        return text
    }

    struct CommandFailure: Error, CustomStringConvertible {
        var command: String
        var status: Int32
        var output: String
        var description: String { "\(command) exited \(status): \(output)" }
    }

    /// A C plugin whose handshake fields are set by macros, to make one fixture per refusal.
    /// Registers a C scheduler "c-\(NAME)" whose filter accepts nodes with enough free cpu and
    /// whose score prefers the node with the most free memory.
    static func handshakeSource(magic: String = "CAPSTAN_PLUGIN_MAGIC", size: String = "sizeof(capstan_plugin_info)", major: Int = 1, minor: Int = 0, swiftVersion: String = "NULL", kind: String = "CAPSTAN_KIND_SCHEDULER", apiVersion: Int = 1, name: String = "fixture", entry: String = "capstan_plugin_v1", extra: String = "") -> String {
        """
        #include <capstan_plugin.h>
        #include <stddef.h>
        \(extra)
        static void filter(const capstan_c_unit *unit, const capstan_c_node *nodes, int64_t count, int32_t *feasible) {
            for (int64_t i = 0; i < count; i++)
                feasible[i] = nodes[i].allocatable.cpu_milli - nodes[i].requested.cpu_milli >= unit->requests.cpu_milli;
        }
        static void score(const capstan_c_unit *unit, const capstan_c_node *nodes, int64_t count, int64_t *scores) {
            (void)unit;
            int64_t best = 1;
            for (int64_t i = 0; i < count; i++) {
                int64_t free = nodes[i].allocatable.memory_bytes - nodes[i].requested.memory_bytes;
                if (free > best) best = free;
            }
            for (int64_t i = 0; i < count; i++)
                scores[i] = (nodes[i].allocatable.memory_bytes - nodes[i].requested.memory_bytes) * 100 / best;
        }
        static const capstan_c_function functions[] = {
            {"filter", "v(pplp)", (void *)filter},
            {"score", "v(pplp)", (void *)score},
        };
        static int32_t register_plugins(void *context, void *registrar, const capstan_host_api *host) {
            (void)context;
            host->log(registrar, CAPSTAN_LOG_INFO, "registering c-\(name)");
            return host->register_c_plugin(registrar, CAPSTAN_KIND_SCHEDULER, "c-\(name)", functions, 2);
        }
        static const capstan_kind_decl kinds[] = {{\(kind), \(apiVersion)}};
        static const capstan_plugin_info info = {
            \(magic), \(size), \(major), \(minor), \(swiftVersion), "\(name)", "0.1.0", kinds, 1, register_plugins, NULL,
        };
        const capstan_plugin_info *\(entry)(void) { return &info; }
        """
    }
}
