import Dispatch
import Foundation
import MainBrain

/// The single owner of the model and the BLAS threads. Jobs run one at a time on a dedicated
/// thread (never on NIO's event loops or Swift's cooperative pool, which must not block);
/// at most `capacity` wait behind the running one, so the queue is never unbounded.
final class ComputeScheduler: @unchecked Sendable {
    enum SubmitError: Error {
        case overloaded(waiting: Int)
        case stopping
    }

    /// One unit of work: runs on the compute thread with the generator.
    final class Job: @unchecked Sendable {
        let work: (Generator, Job) -> Void
        let enqueued = DispatchTime.now()
        private let lock = NSLock()
        private var cancelled = false

        init(work: @escaping (Generator, Job) -> Void) { self.work = work }

        var isCancelled: Bool { lock.withLock { cancelled } }
        /// Called when the client goes away: generation stops at the next token.
        func cancel() { lock.withLock { cancelled = true } }
    }

    let generator: Generator
    let capacity: Int
    private let condition = NSCondition()
    private var waiting: [Job] = []
    private var running: Job?
    private var stopped = false
    private var thread: Thread?
    /// Set while a job runs ("generating 12/256 tokens"); read by /v1/status.
    private var activityText = "idle"
    /// Last sign of life from the compute loop (uptime ns): the watchdog pings only while it is fresh.
    private var heartbeat = DispatchTime.now().uptimeNanoseconds
    /// Test-only stall (see `stall(seconds:)`).
    private var stallUntil: UInt64 = 0

    init(generator: Generator, capacity: Int) {
        self.generator = generator
        self.capacity = capacity
    }

    func start() {
        let t = Thread { [self] in loop() }
        t.name = "twinbrain-compute"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    /// Queues a job, or refuses it when `capacity` jobs already wait.
    func submit(_ job: Job) throws {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else { throw SubmitError.stopping }
        guard waiting.count < capacity || (running == nil && waiting.isEmpty) else {
            throw SubmitError.overloaded(waiting: waiting.count)
        }
        waiting.append(job)
        condition.signal()
    }

    /// Stops taking jobs; queued ones are cancelled, the running one is asked to stop.
    func shutdown() {
        condition.lock()
        stopped = true
        for job in waiting { job.cancel() }
        running?.cancel()
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until the compute thread has finished its last job (after `shutdown`).
    func waitUntilIdle(timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let busy = condition.withLock { running != nil || !waiting.isEmpty }
            if !busy { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    var snapshot: (running: Int, waiting: Int, activity: String) {
        condition.withLock { (running == nil ? 0 : 1, waiting.count, activityText) }
    }

    func setActivity(_ text: String) {
        condition.withLock {
            activityText = text
            heartbeat = DispatchTime.now().uptimeNanoseconds
        }
    }

    /// Whether the compute loop showed life within `window`.
    func isAlive(within window: Duration) -> Bool {
        let last = condition.withLock { heartbeat }
        let age = DispatchTime.now().uptimeNanoseconds &- last
        return Double(age) / 1e9 < Double(window.components.seconds) + Double(window.components.attoseconds) / 1e18
    }

    /// Blocks the compute loop for a while without heartbeats: lets tests prove that a hung
    /// compute loop stops the watchdog pings. Enabled only by `--debug-stall`.
    func stall(seconds: Double) {
        condition.withLock { stallUntil = DispatchTime.now().uptimeNanoseconds + UInt64(seconds * 1e9) }
        condition.signal()
    }

    private func loop() {
        while true {
            condition.lock()
            while waiting.isEmpty && !stopped && stallUntil == 0 {
                heartbeat = DispatchTime.now().uptimeNanoseconds
                _ = condition.wait(until: Date(timeIntervalSinceNow: 0.25))
            }
            if stallUntil != 0 {
                let until = stallUntil
                stallUntil = 0
                condition.unlock()
                while DispatchTime.now().uptimeNanoseconds < until { usleep(10_000) }
                continue
            }
            if waiting.isEmpty && stopped { condition.unlock(); return }
            let job = waiting.removeFirst()
            running = job
            activityText = "starting a request"
            heartbeat = DispatchTime.now().uptimeNanoseconds
            condition.unlock()

            job.work(generator, job)

            condition.lock()
            running = nil
            activityText = "idle"
            heartbeat = DispatchTime.now().uptimeNanoseconds
            condition.unlock()
        }
    }
}
