import ControlAPI
import Foundation
import Intake
import Logging
import Store

/// Runs ingest jobs one at a time on its own thread (never the compute thread, never the event
/// loops). Jobs live in the store, so those a killed daemon left unfinished are picked up again
/// at start; re-running an ingest reads only files not yet registered.
final class IntakeService: @unchecked Sendable {
    let store: Store
    let ingester: Ingester?
    let helperProblem: String?
    let logger: Logger
    private let condition = NSCondition()
    private var queue: [(job: Job, path: String)] = []
    private var cancelled: Set<Int64> = []
    private var stopping = false
    private var thread: Thread?

    init(store: Store, logger: Logger) {
        self.store = store
        self.logger = logger
        do {
            ingester = Ingester(store: store, extractor: try ExtractorRunner())
            helperProblem = nil
        } catch {
            ingester = nil
            helperProblem = "\(error)"
            logger.error("intake disabled: \(error)")
        }
    }

    /// Starts the worker and queues the jobs a previous run left unfinished.
    func start() throws {
        for job in try store.unfinishedJobs() where job.kind == "ingest" {
            logger.info("resuming ingest job \(job.id) of \(job.target)")
            enqueue(job, path: job.target)
        }
        let t = Thread { [weak self] in self?.loop() }
        t.name = "twinbrain-intake"
        thread = t
        t.start()
    }

    func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }

    /// Registers an ingest job and queues it.
    func submit(path: String) throws -> Job {
        guard ingester != nil else { throw APIError(.unavailable, "intake is disabled: \(helperProblem ?? "unknown problem")") }
        let job = try store.createJob(kind: "ingest", target: path)
        enqueue(job, path: path)
        return job
    }

    func cancel(_ id: Int64) {
        condition.withLock { cancelled.insert(id) }
    }

    private func enqueue(_ job: Job, path: String) {
        condition.withLock {
            queue.append((job, path))
            condition.signal()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            let (job, path) = queue.removeFirst()
            condition.unlock()
            guard let ingester else { continue }
            let start = Date()
            do {
                let s = try ingester.run(job: job, path: path, isCancelled: { [weak self] in
                    guard let self else { return true }
                    return self.condition.withLock { self.stopping || self.cancelled.contains(job.id) }
                })
                let seconds = String(format: "%.1f", Date().timeIntervalSince(start))
                logger.info("ingest job \(job.id) of \(path) done in \(seconds) s: \(s.added) added, \(s.updated) updated, \(s.unchanged) unchanged, \(s.failed) failed, \(s.skipped) skipped")
            } catch is Ingester.Cancelled {
                // Stopping: leave it running in the store so the next start resumes it.
                if condition.withLock({ stopping }) { try? store.updateJob(job.id, state: .running) }
                logger.info("ingest job \(job.id) of \(path) stopped")
            } catch {
                logger.error("ingest job \(job.id) of \(path) failed: \(error)")
            }
        }
    }
}
