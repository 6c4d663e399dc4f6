import CapstanSDK
import CCapstanPluginABI
import Crypto
import Foundation

/// Opens plugin files and runs the handshake checks in the order of DESIGN.md section 2 rule 4,
/// each refusal with its own message: file and ELF → SHA-256 pin → dlopen → entry symbol →
/// magic → struct size → SDK major → SDK minor → compiler → kinds and API versions → register.
/// (Unique names and configuration are checked by ``PluginHost`` when it creates the plugins.)
public struct PluginLoader: Sendable {
    public let log: @Sendable (PluginLogLevel, String) -> Void

    public init(log: @escaping @Sendable (PluginLogLevel, String) -> Void = { _, _ in }) {
        self.log = log
    }

    /// An opened library: its report so far and what it registered.
    public struct OpenedLibrary: Sendable {
        public var report: LibraryReport
        public var registrations: [PluginRegistration]
    }

    /// Runs every library-level check and the library's register call.
    /// - Parameter pinnedSHA256: when set, the file's hash must equal it (hex, any case).
    /// - Returns: the report (with ``LibraryReport/failure`` set on refusal) and registrations.
    public func open(path: String, pinnedSHA256: String? = nil) -> OpenedLibrary {
        var report = LibraryReport(path: path)
        do {
            let registrations = try open(path: path, pinnedSHA256: pinnedSHA256, into: &report)
            report.plugins = registrations.map { PluginReport(name: $0.name, kind: $0.kind.description, configurationType: $0.configurationType) }
            return OpenedLibrary(report: report, registrations: registrations)
        } catch {
            report.failure = error
            log(.warning, "refused plugin \(path): \(error.message)")
            return OpenedLibrary(report: report, registrations: [])
        }
    }

    private func open(path: String, pinnedSHA256: String?, into report: inout LibraryReport) throws(LoadFailure) -> [PluginRegistration] {
        if let problem = ELFFile.problem(at: path) {
            throw LoadFailure(FileManager.default.fileExists(atPath: path) ? .elf : .file, "\(path) \(problem)")
        }
        // One open file for every check: its owner and mode, its hash, and what dlopen maps
        // (through /proc/self/fd), so the file cannot be swapped between check and load.
        let file = try PluginFile.open(path)
        report.sha256 = file.sha256
        if let pinnedSHA256 {
            guard let actual = report.sha256, actual == pinnedSHA256.lowercased() else {
                throw LoadFailure(.sha256, "SHA-256 mismatch: the config pins \(pinnedSHA256.lowercased()) but the file is \(report.sha256 ?? "unreadable"); the file changed since it was pinned (re-pin it if the change is intended)")
            }
        }
        let library = try DynamicLibrary.open(file.procPath, named: path)
        file.keepOpen()
        let entry = try library.requiredSymbol(CAPSTAN_PLUGIN_ENTRY_V1)
        let function = unsafeBitCast(entry, to: (@convention(c) () -> UnsafeRawPointer?).self)
        guard let raw = function() else { throw LoadFailure(.magic, "`\(CAPSTAN_PLUGIN_ENTRY_V1)` returned NULL") }
        let handshake = try PluginHandshake.read(raw)
        report.libraryName = handshake.name
        report.libraryVersion = handshake.version
        report.sdkVersion = handshake.sdkVersion
        report.compiler = handshake.compilerVersion ?? "C"
        report.kinds = handshake.kinds.map { PluginKind(rawValue: $0.kind)?.description ?? "unknown(\($0.kind))" }
        let kinds = try handshake.declaredKinds()
        return try register(handshake, kinds: kinds)
    }

    /// Calls the library's register function with a fresh registrar.
    private func register(_ handshake: PluginHandshake, kinds: Set<PluginKind>) throws(LoadFailure) -> [PluginRegistration] {
        let info = handshake.info.pointee
        guard let registerFunction = info.register_plugins else {
            throw LoadFailure(.registration, "the handshake has no register function")
        }
        let registrar = PluginRegistrar(declaredKinds: kinds)
        let hostAPI = try HostAPI(libraryName: handshake.name, log: log)
        let opaque = Unmanaged.passRetained(registrar)
        defer { opaque.release() }
        let status = registerFunction(info.context, opaque.toOpaque(), hostAPI.table)
        if status != 0 {
            let cError = HostAPI.registrationErrors.withLock { $0.removeValue(forKey: UInt(bitPattern: opaque.toOpaque())) }
            var reason = cError ?? "returned \(status)"
            if handshake.compilerVersion != nil, let context = info.context, let error = PluginExport.registrationFailure(context: context) {
                reason = "\(error)"
            }
            throw LoadFailure(.registration, "registering its plugins failed: \(reason)")
        }
        let registrations = registrar.registrations
        guard !registrations.isEmpty else {
            throw LoadFailure(.registration, "registered no plugin")
        }
        return registrations
    }

    /// The file's SHA-256 in lowercase hex; nil when unreadable.
    public static func sha256(ofFileAt path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }
}
