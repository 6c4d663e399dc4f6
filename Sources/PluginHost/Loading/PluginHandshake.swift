import CapstanSDK
import CCapstanPluginABI

/// The handshake a library's `capstan_plugin_v1` returned, read field by field, each only after
/// the fields before it proved the struct is one we understand.
struct PluginHandshake: Sendable {
    var sdkMajor: UInt16
    var sdkMinor: UInt16
    /// Nil for plugins written in C or Rust.
    var compilerVersion: String?
    var name: String
    var version: String
    var kinds: [(kind: UInt32, apiVersion: UInt32)]
    nonisolated(unsafe) var info: UnsafePointer<capstan_plugin_info>

    var sdkVersion: String { "\(sdkMajor).\(sdkMinor)" }

    /// The smallest struct a v1 plugin may return.
    static let minimumSize = UInt32(MemoryLayout<capstan_plugin_info>.size)

    /// Checks magic, struct size, SDK major and minor, compiler; then reads the rest.
    static func read(_ raw: UnsafeRawPointer) throws(LoadFailure) -> PluginHandshake {
        let magic = raw.loadUnaligned(as: UInt32.self)
        guard magic == CAPSTAN_PLUGIN_MAGIC else {
            throw LoadFailure(.magic, "bad magic 0x\(String(magic, radix: 16)) (expected 0x\(String(CAPSTAN_PLUGIN_MAGIC, radix: 16))): `capstan_plugin_v1` does not return a Capstan handshake")
        }
        let size = raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        guard size >= minimumSize else {
            throw LoadFailure(.structSize, "handshake struct is \(size) bytes, smaller than the \(minimumSize) of SDK \(SDKVersion.major).0: the plugin was built against a broken or foreign header")
        }
        let info = raw.assumingMemoryBound(to: capstan_plugin_info.self)
        let fields = info.pointee
        let pluginSDK = "\(fields.sdk_major).\(fields.sdk_minor)"
        if fields.sdk_major != SDKVersion.major {
            throw LoadFailure(.sdkMajor, "plugin built for SDK \(pluginSDK) but host runs SDK \(SDKVersion.string): major version mismatch; rebuild the plugin against SDK \(SDKVersion.major).x")
        }
        if fields.sdk_minor > SDKVersion.minor {
            throw LoadFailure(.sdkMinor, "plugin built for SDK \(pluginSDK) is newer than host SDK \(SDKVersion.string); upgrade the host")
        }
        let compiler = fields.swift_version.map { String(cString: $0) }
        if let compiler, compiler != SDKVersion.compilerVersion {
            throw LoadFailure(.compiler, "plugin built with Swift \(compiler) but host built with Swift \(SDKVersion.compilerVersion); Swift has no stable ABI on Linux, so rebuild the plugin with Swift \(SDKVersion.compilerVersion)")
        }
        var kinds: [(UInt32, UInt32)] = []
        if let declarations = fields.kinds {
            for index in 0..<Int(fields.kind_count) {
                kinds.append((declarations[index].kind, declarations[index].api_version))
            }
        }
        return PluginHandshake(
            sdkMajor: fields.sdk_major,
            sdkMinor: fields.sdk_minor,
            compilerVersion: compiler,
            name: fields.plugin_name.map { String(cString: $0) } ?? "",
            version: fields.plugin_version.map { String(cString: $0) } ?? "",
            kinds: kinds,
            info: info)
    }

    /// Checks every declared kind is known and its API version served by this host.
    func declaredKinds() throws(LoadFailure) -> Set<PluginKind> {
        guard !kinds.isEmpty else { throw LoadFailure(.kind, "declares no plugin kind") }
        var result = Set<PluginKind>()
        for (raw, apiVersion) in kinds {
            guard let kind = PluginKind(rawValue: raw) else {
                throw LoadFailure(.kind, "declares unknown plugin kind \(raw); this host knows \(PluginKind.allCases.map { "\($0.rawValue) (\($0))" }.joined(separator: ", ")); it may need a newer host")
            }
            guard kind.supportedAPIVersions.contains(apiVersion) else {
                throw LoadFailure(.kind, "implements \(kind) API v\(apiVersion) but this host serves \(kind) API v\(kind.supportedAPIVersions.lowerBound)…v\(kind.supportedAPIVersions.upperBound)")
            }
            result.insert(kind)
        }
        return result
    }
}
