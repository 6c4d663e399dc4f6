import CCapstanPluginABI

/// Writes a plugin library's handshake. Use it from the one exported entry point:
///
/// ```swift
/// @_cdecl("capstan_plugin_v1")
/// public func capstanPluginV1() -> UnsafeRawPointer {
///     PluginExport.handshake(name: "binpack", version: "1.0.0", kinds: [.scheduler]) { registrar in
///         try registrar.register(scheduler: "binpack", configuration: BinpackConfiguration.self) { config, _ in
///             Binpack(config)
///         }
///     }
/// }
/// ```
///
/// The version fields are inlined into the plugin, so they are the ones it was compiled against.
public enum PluginExport {
    /// Builds the `capstan_plugin_info` the host reads. Call it from `capstan_plugin_v1` only.
    /// - Parameters:
    ///   - name: the library's name, shown in `capstan plugins list`.
    ///   - version: the library's own version.
    ///   - kinds: every kind it registers plugins of.
    ///   - register: called once, after the host's checks passed; registers the plugins.
    /// - Returns: a pointer to the handshake, valid for the life of the process.
    @_alwaysEmitIntoClient
    public static func handshake(name: String, version: String, kinds: [PluginKind], register: @escaping @Sendable (PluginRegistrar) throws -> Void) -> UnsafeRawPointer {
        makeHandshake(
            magic: CAPSTAN_PLUGIN_MAGIC,
            structSize: UInt32(MemoryLayout<capstan_plugin_info>.size),
            sdkMajor: SDKVersion.major,
            sdkMinor: SDKVersion.minor,
            compilerVersion: SDKVersion.compilerVersion,
            name: name,
            version: version,
            kinds: kinds.map { (kind: $0.rawValue, apiVersion: $0.compiledAPIVersion) },
            register: register)
    }

    /// Allocates and fills the handshake. Not inlined: only the arguments must be the plugin's.
    public static func makeHandshake(magic: UInt32, structSize: UInt32, sdkMajor: UInt16, sdkMinor: UInt16, compilerVersion: String, name: String, version: String, kinds: [(kind: UInt32, apiVersion: UInt32)], register: @escaping @Sendable (PluginRegistrar) throws -> Void) -> UnsafeRawPointer {
        let declarations = UnsafeMutablePointer<capstan_kind_decl>.allocate(capacity: max(kinds.count, 1))
        for (index, kind) in kinds.enumerated() {
            declarations[index] = capstan_kind_decl(kind: kind.kind, api_version: kind.apiVersion)
        }
        let info = UnsafeMutablePointer<capstan_plugin_info>.allocate(capacity: 1)
        info.initialize(to: capstan_plugin_info(
            magic: magic,
            struct_size: structSize,
            sdk_major: sdkMajor,
            sdk_minor: sdkMinor,
            swift_version: UnsafePointer(strdup(compilerVersion)),
            plugin_name: UnsafePointer(strdup(name)),
            plugin_version: UnsafePointer(strdup(version)),
            kinds: UnsafePointer(declarations),
            kind_count: UInt32(kinds.count),
            register_plugins: { context, registrar, _ in
                guard let context, let registrar else { return -1 }
                let body = Unmanaged<RegistrationBody>.fromOpaque(context).takeUnretainedValue()
                let target = Unmanaged<PluginRegistrar>.fromOpaque(registrar).takeUnretainedValue()
                do {
                    try body.register(target)
                    return 0
                } catch {
                    body.failure = error
                    return -1
                }
            },
            context: Unmanaged.passRetained(RegistrationBody(register)).toOpaque()))
        return UnsafeRawPointer(info)
    }

    /// The error a Swift plugin's register closure threw, for the host's message.
    public static func registrationFailure(context: UnsafeMutableRawPointer) -> (any Error)? {
        Unmanaged<RegistrationBody>.fromOpaque(context).takeUnretainedValue().failure
    }
}

/// Holds a Swift plugin's register closure behind the handshake's `context` pointer.
final class RegistrationBody: @unchecked Sendable {
    let register: @Sendable (PluginRegistrar) throws -> Void
    // Written once by the registering thread before the host reads it on the same thread.
    var failure: (any Error)?

    init(_ register: @escaping @Sendable (PluginRegistrar) throws -> Void) {
        self.register = register
    }
}

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif
