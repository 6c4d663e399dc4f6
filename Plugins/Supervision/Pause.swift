import Dispatch

/// Sleeps that ignore cancellation: a stop that began must finish.
public enum Pause {
    /// Suspends for about `milliseconds`, whether or not the calling task is cancelled.
    public static func milliseconds(_ milliseconds: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) { continuation.resume() }
        }
    }
}
