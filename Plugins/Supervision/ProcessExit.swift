import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Waits for a process to end without asking on a timer: a pidfd (Linux 5.3+) becomes readable
/// when its process exits, and a dispatch read source (epoll) wakes the waiter then. It works
/// for any process, not only children: an agent that re-adopted instances after a restart waits
/// for shims it did not start.
///
/// Where the C library has no `pidfd_open` (glibc < 2.36) or the kernel refuses it, the wait
/// falls back to looking at /proc every 50 ms.
public enum ProcessExit {
    /// glibc's `pidfd_open` (2.36+), which Swift does not import; nil on an older C library.
    static let pidfdOpen: (@convention(c) (pid_t, UInt32) -> Int32)? = {
        guard let symbol = dlsym(nil, "pidfd_open") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (pid_t, UInt32) -> Int32).self)
    }()

    /// Returns once the process `pid` that started at `startTicks` (see ``ProcessInspection``)
    /// has ended, or at once when it already has (or the pid now names another process).
    /// Returns early when the calling task is cancelled.
    public static func wait(pid: Int32, startTicks: UInt64?) async {
        guard pid > 0 else { return }
        guard let open = pidfdOpen else { return await fallbackWait(pid: pid, startTicks: startTicks) }
        let fd = open(pid, 0)
        if fd < 0 {
            // ESRCH: gone. Anything else (an old kernel, a seccomp filter): look at /proc.
            if errno != ESRCH { await fallbackWait(pid: pid, startTicks: startTicks) }
            return
        }
        // The descriptor pins the process: if it is the one we mean now, it is the one we wait for.
        guard ProcessInspection.isAlive(pid, startTicks: startTicks) else {
            close(fd)
            return
        }
        await readable(fd, closing: true)
    }

    /// Returns once `fd` is readable (data, end of file, or — for a pidfd — its process ended),
    /// or the calling task is cancelled, or `seconds` (when given) have passed.
    /// - Parameter closing: close `fd` when done.
    public static func readable(_ fd: Int32, closing: Bool, seconds: Double? = nil) async {
        let waiter = Waiter(fd: fd, closing: closing)
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                waiter.start(continuation)
                if let seconds {
                    Waiter.queue.asyncAfter(deadline: .now() + .milliseconds(milliseconds(seconds))) { waiter.finish() }
                }
            }
        } onCancel: {
            waiter.finish()
        }
    }

    /// Runs `body` with at most `seconds`, whether or not the calling task is cancelled.
    /// - Returns: true when `body` finished in time (and was not cancelled).
    public static func within(seconds: Double, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        let limit = Duration.milliseconds(milliseconds(seconds))
        // An unstructured task: the caller's cancellation does not reach it.
        return await Task {
            await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    await body()
                    return !Task.isCancelled
                }
                group.addTask {
                    try? await Task.sleep(for: limit)
                    return false
                }
                let first = await group.next() ?? false
                group.cancelAll()
                return first
            }
        }.value
    }

    /// Like ``wait(pid:startTicks:)`` but at most `seconds`, and whether or not the calling task
    /// is cancelled (a stop that began must finish).
    /// - Returns: true when the process ended in time.
    public static func wait(pid: Int32, startTicks: UInt64?, seconds: Double) async -> Bool {
        await within(seconds: seconds) { await wait(pid: pid, startTicks: startTicks) }
    }

    /// `seconds` as whole milliseconds, held to 0…365 days; NaN is 0 (no conversion traps,
    /// whatever a caller passes as a grace period).
    static func milliseconds(_ seconds: Double) -> Int {
        guard !seconds.isNaN else { return 0 }
        return Int(min(max(seconds, 0), 31_536_000) * 1000)
    }

    private static func fallbackWait(pid: Int32, startTicks: UInt64?) async {
        while ProcessInspection.isAlive(pid, startTicks: startTicks) && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    /// One descriptor and its read source; resumes its continuation exactly once: when readable,
    /// or on cancellation.
    private final class Waiter: @unchecked Sendable {
        enum State {
            case idle
            case waiting(any DispatchSourceRead, CheckedContinuation<Void, Never>)
            case done
        }
        let fd: Int32
        let closing: Bool
        /// Guarded by `lock`.
        private var state = State.idle
        private let lock = NSLock()
        static let queue = DispatchQueue(label: "capstan.process-exit")

        init(fd: Int32, closing: Bool) {
            self.fd = fd
            self.closing = closing
        }

        func start(_ continuation: CheckedContinuation<Void, Never>) {
            let fd = self.fd
            let closing = self.closing
            lock.lock()
            guard case .idle = state else {
                // Cancelled before it began: no source is made. (One made and released without
                // ever being resumed is a libdispatch crash — "release of an inactive object" —
                // which an agent met when an instance's start was cancelled by its fencing.)
                lock.unlock()
                if closing { close(fd) }
                continuation.resume()
                return
            }
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: Self.queue)
            source.setEventHandler { [weak self] in self?.finish() }
            source.setCancelHandler { if closing { close(fd) } }
            state = .waiting(source, continuation)
            lock.unlock()
            // A finish() between the unlock and here cancels first; the resume then activates
            // the source, which runs its cancel handler.
            source.resume()
        }

        func finish() {
            lock.lock()
            let previous = state
            state = .done
            lock.unlock()
            if case .waiting(let source, let continuation) = previous {
                source.cancel()
                continuation.resume()
            }
        }
    }
}
