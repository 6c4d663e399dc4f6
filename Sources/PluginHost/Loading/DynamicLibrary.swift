#if canImport(Glibc)
import Glibc
#endif

/// An open shared library. Owned: one per loaded file, kept for the life of the process.
///
/// Opened with `RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE` and never closed: `dlclose` of a Swift image
/// leaves its metadata registered with the runtime, and the next conformance lookup crashes
/// (DESIGN.md rule 7). To replace a plugin, load the new file beside the old one.
final class DynamicLibrary: Sendable {
    let path: String
    nonisolated(unsafe) let handle: UnsafeMutableRawPointer

    private init(path: String, handle: UnsafeMutableRawPointer) {
        self.path = path
        self.handle = handle
    }

    /// Opens a library, resolving every symbol now.
    /// - Throws: the loader's message, made readable: missing libraries and Swift symbols named.
    /// - Parameters:
    ///   - path: what dlopen opens (a `/proc/self/fd/N` of an already checked file).
    ///   - name: the file's real path, for messages and reports.
    static func open(_ path: String, named name: String? = nil) throws(LoadFailure) -> DynamicLibrary {
        _ = dlerror()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
            var message = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            if let name { message = message.replacingOccurrences(of: path, with: name) }
            throw LoadFailure(.dlopen, explain(dlopenError: message))
        }
        return DynamicLibrary(path: name ?? path, handle: handle)
    }

    /// A symbol the library must export.
    func requiredSymbol(_ name: String) throws(LoadFailure) -> UnsafeMutableRawPointer {
        guard let symbol = optionalSymbol(name) else {
            throw LoadFailure(.entrySymbol, "exports no `\(name)` symbol: it is not a Capstan plugin, or its entry point is not `public` (use `@_cdecl(\"\(name)\") public func`)")
        }
        return symbol
    }

    /// A symbol the library may export.
    func optionalSymbol(_ name: String) -> UnsafeMutableRawPointer? {
        dlsym(handle, name)
    }

    /// Turns dlopen's text into advice.
    static func explain(dlopenError message: String) -> String {
        if let range = message.range(of: "undefined symbol: ") {
            let symbol = String(message[range.upperBound...]).trimmingCharacters(in: .whitespaces)
            if symbol.hasPrefix("$s") {
                let readable = SwiftDemangler.demangle(symbol) ?? symbol
                let library = readable.contains("CapstanCore") ? "libCapstanCore.so" : "libCapstanSDK.so"
                return "plugin needs '\(readable)', which this host's \(library) (SDK \(SDKVersion.string)) lacks: it was built against a newer SDK; rebuild it against SDK \(SDKVersion.string) or upgrade the host"
            }
            return "undefined symbol \(symbol): the plugin needs a library or symbol this host does not have (\(message))"
        }
        if let range = message.range(of: ": cannot open shared object file") {
            let missing = message[..<range.lowerBound].components(separatedBy: ": ").last ?? message
            return "a library it depends on cannot be found: \(missing) (install it, or check the plugin's rpath / LD_LIBRARY_PATH); dlopen said: \(message)"
        }
        return message
    }
}

import CapstanSDK
import Foundation

/// Demangles Swift symbols through the runtime's `swift_demangle`.
enum SwiftDemangler {
    private typealias DemangleFunction = @convention(c) (UnsafePointer<CChar>?, Int, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?, UInt32) -> UnsafeMutablePointer<CChar>?

    static func demangle(_ symbol: String) -> String? {
        guard let address = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "swift_demangle") else { return nil }
        let function = unsafeBitCast(address, to: DemangleFunction.self)
        return symbol.withCString { name in
            guard let result = function(name, strlen(name), nil, nil, 0) else { return nil }
            defer { free(result) }
            return String(cString: result)
        }
    }
}
