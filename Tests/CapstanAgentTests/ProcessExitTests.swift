import CapstanSupervision
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The wait for a descriptor (a pidfd, a pipe) that instance starts and stops rely on.
struct ProcessExitTests {
    /// A pipe other tests' child processes do not inherit (one that did would keep its read
    /// end open). Close-on-exec from its creation: set afterwards, a process another test
    /// spawns in between inherits it (seen once in a full run).
    static func pipeClosedOnExec(_ fds: inout [Int32]) -> Bool {
        ProcessSpawner.closeOnExecPipe(&fds)
    }

    /// A wait whose task was cancelled before it began returns at once and closes the descriptor.
    /// It used to make a dispatch source and drop it without resuming it, which libdispatch
    /// answers with a crash ("release of an inactive object"): an agent crashed so when a
    /// fenced node's instance start was cancelled.
    @Test func aWaitCancelledBeforeItBeginsReturnsAndClosesItsDescriptor() async throws {
        for _ in 0..<50 {
            var fds: [Int32] = [0, 0]
            try #require(Self.pipeClosedOnExec(&fds))
            let reader = fds[0]
            let task = Task {
                // Wait until cancelled, so the wait below begins cancelled.
                while !Task.isCancelled { await Task.yield() }
                await ProcessExit.readable(reader, closing: true)
            }
            task.cancel()
            await task.value
            // The read end is closed when the write end reports an error (no readers left) —
            // asked of the pipe, not of the number, which another test may have reused. Asked
            // for up to 5 s: a process another test is spawning holds every descriptor, even a
            // close-on-exec one, from its fork until its exec.
            var closed = false
            for _ in 0..<500 where !closed {
                var writeEnd = pollfd(fd: fds[1], events: Int16(POLLOUT), revents: 0)
                closed = poll(&writeEnd, 1, 0) == 1 && writeEnd.revents & Int16(POLLERR) != 0
                if !closed { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(closed, "the descriptor was not closed")
            close(fds[1])
            if !closed { break }
        }
    }

    /// A wait returns when its descriptor becomes readable, and on cancellation while waiting.
    @Test func aWaitEndsWhenReadableOrCancelled() async throws {
        var fds: [Int32] = [0, 0]
        try #require(Self.pipeClosedOnExec(&fds))
        let reader = fds[0]
        let waiting = Task { await ProcessExit.readable(reader, closing: true) }
        try await Task.sleep(for: .milliseconds(20))
        var byte: UInt8 = 1
        #expect(write(fds[1], &byte, 1) == 1)
        await waiting.value
        close(fds[1])

        try #require(Self.pipeClosedOnExec(&fds))
        let other = fds[0]
        let cancelled = Task { await ProcessExit.readable(other, closing: true) }
        try await Task.sleep(for: .milliseconds(20))
        cancelled.cancel()
        await cancelled.value
        close(fds[1])
    }
}
