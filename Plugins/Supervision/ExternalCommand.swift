import CapstanSDK
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One run of a helper program (runc, umoci, a CNI plugin): its exit status and output.
public struct ExternalCommand: Sendable {
    public var executable: String
    public var arguments: [String]
    public var status: Int32 = 0
    public var stdout = Data()
    public var stderr = Data()

    /// The command line, for messages.
    public var commandLine: String { ([executable] + arguments).joined(separator: " ") }

    /// Runs `executable` to the end on a thread of its own (not the cooperative pool), killing
    /// it after `timeout` seconds. Does not observe cancellation: a stop that began must finish.
    /// - Throws: ``PluginError`` with code `internal` when it cannot start, times out, or (with
    ///   `check`) exits non-zero; the message carries its stderr.
    /// - Parameters:
    ///   - input: written to its stdin (then closed); nil gives it /dev/null.
    ///   - environment: its whole environment; nil inherits this process's.
    public static func run(_ executable: String, _ arguments: [String], timeout: Double, check: Bool = true, input: Data? = nil, environment: [String: String]? = nil) async throws -> ExternalCommand {
        let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ExternalCommand, any Error>) in
            let thread = Thread {
                continuation.resume(with: Result { try runBlocking(executable, arguments, timeout: timeout, input: input, environment: environment) })
            }
            thread.name = "capstan-\(URL(fileURLWithPath: executable).lastPathComponent)"
            thread.start()
        }
        if check && result.status != 0 { throw result.failure }
        return result
    }

    /// The error for a run that failed: the command, its status and what it said.
    public var failure: PluginError {
        PluginError(.internal, "\(commandLine) exited with status \(status): \(diagnostic)")
    }

    /// stderr (or stdout when stderr is empty), trimmed; runc's `msg="…"` when it logged one.
    public var diagnostic: String {
        let text = String(decoding: stderr.isEmpty ? stdout : stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let messages = text.split(separator: "\n").compactMap { line -> String? in
            guard let start = line.range(of: "msg=\"") else { return nil }
            var message = line[start.upperBound...]
            if message.hasSuffix("\"") { message = message.dropLast() }
            return message.replacingOccurrences(of: "\\\"", with: "\"")
        }
        return messages.isEmpty ? (text.isEmpty ? "no output" : text) : messages.joined(separator: "; ")
    }

    private static func runBlocking(_ executable: String, _ arguments: [String], timeout: Double, input: Data?, environment: [String: String]?) throws -> ExternalCommand {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let input {
            // From an unlinked temporary file, not a pipe: a program that exits without reading
            // cannot raise SIGPIPE in this process, and no size can stall the write.
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("capstan-stdin-\(UUID().uuidString)").path
            guard FileManager.default.createFile(atPath: path, contents: input, attributes: [.posixPermissions: 0o600]),
                  let handle = FileHandle(forReadingAtPath: path) else {
                throw PluginError(.internal, "cannot write the input of \(executable) to \(path)")
            }
            unlink(path)
            process.standardInput = handle
        } else {
            process.standardInput = FileHandle.nullDevice
        }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do {
            try process.run()
        } catch {
            throw PluginError(.internal, "cannot run \(executable): \(error.localizedDescription)")
        }
        let pid = process.processIdentifier
        let watch = Watch()
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
            watch.state.withLock { state in
                guard !state.finished else { return }
                state.timedOut = true
                Glibc.kill(pid, SIGKILL)
            }
        }
        // Both pipes are drained at once, so neither can fill up and stall the program. On a
        // thread of its own: a block on Dispatch's global queue waits for a free worker, and
        // those can all be busy with other blocking work (a 10 s stall was seen under load).
        let drained = DispatchSemaphore(value: 0)
        let errorHandle = err.fileHandleForReading
        let drainer = Thread {
            let data = errorHandle.readDataToEndOfFile()
            watch.state.withLock { $0.stderr = data }
            drained.signal()
        }
        drainer.start()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        process.waitUntilExit()
        let state = watch.state.withLock { state in
            state.finished = true
            return state
        }
        let command = ExternalCommand(executable: executable, arguments: arguments, status: process.terminationStatus, stdout: stdout, stderr: state.stderr)
        if state.timedOut {
            throw PluginError(.internal, "\(command.commandLine) did not finish within \(timeout) s and was killed")
        }
        return command
    }

    /// What the timer and the stderr reader share with the thread that waits.
    private final class Watch: Sendable {
        struct State {
            var finished = false
            var timedOut = false
            var stderr = Data()
        }
        let state = Mutex(State())
    }

    /// The absolute path of `name` on PATH (and the sbin folders, where Debian puts runc), or nil.
    public static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let folders = path.split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"]
        return folders.lazy
            .filter { $0.hasPrefix("/") }
            .map { "\($0)/\(name)" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
