import CapstanSDK
import CCapstanPluginABI
import Synchronization

/// The `capstan_host_api` a library receives while it registers: how C plugins register
/// themselves, and a log function bound to the library's name.
final class HostAPI: @unchecked Sendable {
    // Read by C code only during the register call; never mutated after init.
    let table: UnsafeMutablePointer<capstan_host_api>
    private let logClosure: FFIClosure

    /// Errors raised by `register_c_plugin`, by registrar address, for the loader's message.
    static let registrationErrors = Mutex<[UInt: String]>([:])

    init(libraryName: String, log: @escaping @Sendable (PluginLogLevel, String) -> Void) throws(LoadFailure) {
        logClosure = try FFIClosure(signature: FFISignature(result: .void, arguments: [.pointer, .int32, .pointer])) { arguments, _ in
            let level = arguments[1]!.load(as: Int32.self)
            guard let message = arguments[2]!.load(as: UnsafePointer<CChar>?.self) else { return }
            log(PluginLogLevel(rawValue: level) ?? .info, "[\(libraryName)] \(String(cString: message))")
        }
        table = .allocate(capacity: 1)
        table.initialize(to: capstan_host_api(
            struct_size: UInt32(MemoryLayout<capstan_host_api>.size),
            register_c_plugin: { registrar, kind, name, functions, count in
                guard let registrar else { return -1 }
                do {
                    try HostAPI.registerC(registrar: registrar, kind: kind, name: name, functions: functions, count: count)
                    return 0
                } catch {
                    HostAPI.registrationErrors.withLock { $0[UInt(bitPattern: registrar)] = "\(error)" }
                    return -1
                }
            },
            log: unsafeBitCast(logClosure.codeAddress, to: (@convention(c) (UnsafeMutableRawPointer?, Int32, UnsafePointer<CChar>?) -> Void).self)))
    }

    /// Binds a C plugin's functions and adds it to the registrar.
    private static func registerC(registrar: UnsafeMutableRawPointer, kind rawKind: UInt32, name: UnsafePointer<CChar>?, functions: UnsafePointer<capstan_c_function>?, count: UInt32) throws(LoadFailure) {
        let target = Unmanaged<PluginRegistrar>.fromOpaque(registrar).takeUnretainedValue()
        guard let name else { throw LoadFailure(.registration, "register_c_plugin was given no name") }
        let pluginName = String(cString: name)
        guard let kind = PluginKind(rawValue: rawKind) else {
            throw LoadFailure(.kind, "C plugin \"\(pluginName)\" has unknown kind \(rawKind)")
        }
        var bound: [String: FFIFunction] = [:]
        for index in 0..<Int(count) {
            guard let entry = functions?[index], let rawName = entry.name, let rawSignature = entry.signature, let address = entry.function else {
                throw LoadFailure(.registration, "C plugin \"\(pluginName)\": function \(index) lacks a name, signature or address")
            }
            let functionName = String(cString: rawName)
            let text = String(cString: rawSignature)
            guard let signature = FFISignature(parsing: text) else {
                throw LoadFailure(.registration, "C plugin \"\(pluginName)\": function \(functionName) has malformed signature \"\(text)\" (write e.g. \"v(pplp)\")")
            }
            bound[functionName] = FFIFunction(interface: try FFICallInterface(signature), address: address)
        }
        switch kind {
        case .scheduler:
            for (functionName, function) in bound {
                guard ["filter", "score"].contains(functionName) else {
                    throw LoadFailure(.registration, "C scheduler \"\(pluginName)\": unknown function \"\(functionName)\" (a C scheduler offers filter and score)")
                }
                guard function.interface.signature == CSchedulerPlugin.batchSignature else {
                    throw LoadFailure(.registration, "C scheduler \"\(pluginName)\": \(functionName) has signature \(function.interface.signature), expected \(CSchedulerPlugin.batchSignature)")
                }
            }
            guard !bound.isEmpty else { throw LoadFailure(.registration, "C scheduler \"\(pluginName)\" offers neither filter nor score") }
            let plugin = CSchedulerPlugin(filterFunction: bound["filter"], scoreFunction: bound["score"])
            do {
                try target.add(PluginRegistration(kind: .scheduler, name: pluginName, configurationType: "none (C plugin)") { input, _ in
                    _ = try input.decode(NoConfiguration.self)
                    return .scheduler(plugin)
                })
            } catch {
                throw LoadFailure(.registration, "\(error)")
            }
        default:
            throw LoadFailure(.registration, "C plugin \"\(pluginName)\": kind \(kind) cannot be written in C yet (only scheduler); see docs/plugin-authoring.md")
        }
    }
}
