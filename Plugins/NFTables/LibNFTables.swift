import CapstanSDK
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// libnftables (Debian's `libnftables1`, what the `nft` command is built on), opened with
/// `dlopen` and called in process: a transaction costs a netlink round trip instead of a new
/// `nft` process (≈16 ms here, most of a one-service change). The script is the same text
/// `nft -f` reads, applied as one transaction.
final class LibNFTables: Sendable {
    typealias New = @convention(c) (UInt32) -> OpaquePointer?
    typealias Run = @convention(c) (OpaquePointer?, UnsafePointer<CChar>) -> Int32
    typealias Buffer = @convention(c) (OpaquePointer?) -> Int32
    typealias Get = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?

    private let run: Run
    private let getError: Get
    private let getOutput: Get
    /// The library's context: one transaction at a time (it is not thread-safe).
    private let context: Mutex<UInt>

    /// nil when the library is not installed (the plugin then runs the `nft` command).
    init?(path: String = "libnftables.so.1") {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL),
              let new = dlsym(handle, "nft_ctx_new"), let run = dlsym(handle, "nft_run_cmd_from_buffer"),
              let bufferError = dlsym(handle, "nft_ctx_buffer_error"), let bufferOutput = dlsym(handle, "nft_ctx_buffer_output"),
              let getError = dlsym(handle, "nft_ctx_get_error_buffer"), let getOutput = dlsym(handle, "nft_ctx_get_output_buffer"),
              let context = unsafeBitCast(new, to: New.self)(0) else { return nil }
        // Errors and output go to buffers (read after each run), not to this process's stderr.
        _ = unsafeBitCast(bufferError, to: Buffer.self)(context)
        _ = unsafeBitCast(bufferOutput, to: Buffer.self)(context)
        self.run = unsafeBitCast(run, to: Run.self)
        self.getError = unsafeBitCast(getError, to: Get.self)
        self.getOutput = unsafeBitCast(getOutput, to: Get.self)
        self.context = Mutex(UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(context))))
    }

    /// Applies `script` as one transaction on a thread of its own (netlink blocks); nil on
    /// success, else libnftables' error text.
    func apply(_ script: String) async -> String? {
        await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
            let thread = Thread { [self] in
                let failure = context.withLock { address -> String? in
                    let context = OpaquePointer(bitPattern: address)
                    let status = script.withCString { run(context, $0) }
                    let errors = getError(context).map { String(cString: $0) } ?? ""
                    _ = getOutput(context)
                    return status == 0 ? nil : (errors.isEmpty ? "libnftables failed with \(status)" : errors.trimmingCharacters(in: .whitespacesAndNewlines))
                }
                continuation.resume(returning: failure)
            }
            thread.name = "capstan-nftables"
            thread.start()
        }
    }
}
