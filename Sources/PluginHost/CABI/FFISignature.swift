import CFFI

/// A C function's type, written `r(aaa)`: return type, then argument types.
/// Letters: `v` void, `i` int32, `l` int64, `d` double, `p` pointer.
struct FFISignature: Sendable, Hashable, CustomStringConvertible {
    enum ValueType: Character, Sendable, Hashable {
        case void = "v", int32 = "i", int64 = "l", double = "d", pointer = "p"

        var ffiType: UnsafeMutablePointer<ffi_type> {
            switch self {
            case .void: capstan_ffi_type_void()
            case .int32: capstan_ffi_type_sint32()
            case .int64: capstan_ffi_type_sint64()
            case .double: capstan_ffi_type_double()
            case .pointer: capstan_ffi_type_pointer()
            }
        }
    }

    var result: ValueType
    var arguments: [ValueType]

    init(result: ValueType, arguments: [ValueType]) {
        self.result = result
        self.arguments = arguments
    }

    /// Parses `l(pp)`. Nil when malformed.
    init?(parsing text: String) {
        let characters = Array(text)
        guard characters.count >= 3, characters[1] == "(", characters.last == ")",
              let result = ValueType(rawValue: characters[0]) else { return nil }
        var arguments: [ValueType] = []
        for character in characters[2..<(characters.count - 1)] {
            guard let type = ValueType(rawValue: character), type != .void else { return nil }
            arguments.append(type)
        }
        self.init(result: result, arguments: arguments)
    }

    var description: String { "\(result.rawValue)(\(String(arguments.map(\.rawValue))))" }
}

/// A call interface prepared once from a signature, kept for the life of the process.
final class FFICallInterface: @unchecked Sendable {
    // Immutable after init; libffi only reads them.
    let cif: UnsafeMutablePointer<ffi_cif>
    let signature: FFISignature
    private let argumentTypes: UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>

    init(_ signature: FFISignature) throws(LoadFailure) {
        self.signature = signature
        cif = .allocate(capacity: 1)
        argumentTypes = .allocate(capacity: max(1, signature.arguments.count))
        for (index, type) in signature.arguments.enumerated() { argumentTypes[index] = type.ffiType }
        let status = ffi_prep_cif(cif, FFI_DEFAULT_ABI, UInt32(signature.arguments.count), signature.result.ffiType, argumentTypes)
        guard status == FFI_OK else { throw LoadFailure(.registration, "libffi cannot prepare a call for signature \(signature) (status \(status.rawValue))") }
    }
}

/// A C function bound through libffi: call it with argument values, get the result.
struct FFIFunction: @unchecked Sendable {
    // The code pointer lives in a library that is never unloaded.
    let interface: FFICallInterface
    let address: UnsafeMutableRawPointer

    /// Calls `void f(pointer, pointer, int64, pointer)`, the shape of the C scheduler calls.
    func callVoid(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int64, _ d: UnsafeMutableRawPointer) {
        var first: UnsafeRawPointer? = a
        var second: UnsafeRawPointer? = b
        var third = count
        var fourth: UnsafeMutableRawPointer? = d
        withUnsafeMutablePointer(to: &first) { p0 in
            withUnsafeMutablePointer(to: &second) { p1 in
                withUnsafeMutablePointer(to: &third) { p2 in
                    withUnsafeMutablePointer(to: &fourth) { p3 in
                        var values: [UnsafeMutableRawPointer?] = [UnsafeMutableRawPointer(p0), UnsafeMutableRawPointer(p1), UnsafeMutableRawPointer(p2), UnsafeMutableRawPointer(p3)]
                        values.withUnsafeMutableBufferPointer { buffer in
                            ffi_call(interface.cif, unsafeBitCast(address, to: (@convention(c) () -> Void).self), nil, buffer.baseAddress)
                        }
                    }
                }
            }
        }
    }
}

/// A Swift closure made into a plain C function pointer with `ffi_closure_alloc`.
/// Kept for the life of the process: C code may hold the pointer.
final class FFIClosure: @unchecked Sendable {
    typealias Body = @Sendable (UnsafeMutablePointer<UnsafeMutableRawPointer?>, UnsafeMutableRawPointer?) -> Void
    let interface: FFICallInterface
    /// The C function pointer to hand out.
    let codeAddress: UnsafeMutableRawPointer
    private let closure: UnsafeMutablePointer<ffi_closure>
    private let box: Unmanaged<BodyBox>

    final class BodyBox: Sendable {
        let body: Body
        init(_ body: @escaping Body) { self.body = body }
    }

    /// - Parameter body: receives libffi's argument pointer array and the result pointer.
    init(signature: FFISignature, body: @escaping Body) throws(LoadFailure) {
        interface = try FFICallInterface(signature)
        var code: UnsafeMutableRawPointer?
        guard let raw = ffi_closure_alloc(MemoryLayout<ffi_closure>.size, &code), let code else {
            throw LoadFailure(.registration, "libffi could not allocate a closure")
        }
        closure = raw.assumingMemoryBound(to: ffi_closure.self)
        codeAddress = code
        box = Unmanaged.passRetained(BodyBox(body))
        let status = ffi_prep_closure_loc(closure, interface.cif, { _, result, arguments, userData in
            guard let arguments, let userData else { return }
            Unmanaged<BodyBox>.fromOpaque(userData).takeUnretainedValue().body(arguments, result)
        }, box.toOpaque(), code)
        guard status == FFI_OK else { throw LoadFailure(.registration, "libffi could not prepare a closure (status \(status.rawValue))") }
    }
}
