import ControlAPI
import Foundation
import Intake
import Logging
import Store

/// Runs ingest jobs one at a time on its own thread (never the compute thread, never the event
/// loops), and turns drives appearing and disappearing under the media roots into jobs and
/// source states. Jobs live in the store: those a killed daemon left unfinished are picked up
/// again at start, and re-running an ingest reads only files not yet registered.
final class IntakeService: @unchecked Sendable {
    let store: Store
    let ingester: Ingester?
    let helperProblem: String?
    let logger: Logger
    let drives: DriveWatcher
    private let condition = NSCondition()
    private var queue: [Work] = []
    private var cancelledJobs: Set<Int64> = []
    /// Drives pulled out: their jobs stop at the next file.
    private var removedDrives: Set<String> = []
    /// Mount point → source key of drives present, to name a drive once its device is gone.
    private var mountedDrives: [String: String] = [:]
    private var running = 0
    private var stopping = false
    private var thread: Thread?
    /// The state directory's filesystem, on which a full disk pauses the job being read.
    let disk: FullDisk
    /// Why the job being read waits, when it does (the disk is full), for status.
    private var paused: String?
    /// Called after each job (new documents may wait to be learned).
    var onJobFinished: () -> Void = {}

    struct Work {
        let job: Job
        let path: String
        let source: SourceInfo?
    }

    init(store: Store, stateDirectory: String, mediaRoots: [String], logger: Logger) {
        self.store = store
        self.logger = logger
        disk = FullDisk(stateDirectory: stateDirectory, logger: logger)
        do {
            ingester = Ingester(store: store, extractor: try ExtractorRunner())
            helperProblem = nil
        } catch {
            ingester = nil
            helperProblem = "\(error)"
            logger.error("intake disabled: \(error)")
        }
        drives = DriveWatcher(mediaRoots: mediaRoots)
    }

    var jobsRunning: Int { condition.withLock { running + queue.count } }

    /// Why reading waits, if it does (status).
    var pausedReason: String? { condition.withLock { paused } }

    /// After storing what was read from `file` failed on a full disk: the job pauses (`FullDisk`)
    /// until there is room (true), or until it is cancelled or the daemon stops (false).
    func waitForSpace(after error: Error, reading file: String, isCancelled: @Sendable () -> Bool) -> Bool {
        let reason = disk.reason("reading \(file)")
        logger.error("intake paused: \(reason) (\(error))")
        condition.withLock { paused = reason }
        defer { condition.withLock { paused = nil } }
        return disk.wait {
            condition.withLock { _ = condition.wait(until: Date(timeIntervalSinceNow: 5)) }
            return isCancelled()
        }
    }

    /// Resumes unfinished jobs, starts the worker, then the drive watcher (which reports the
    /// drives already mounted).
    func start() throws {
        let presentBefore = try store.sources().filter { $0.kind == "drive" && $0.state == .present }
        for job in try store.unfinishedJobs() where job.kind == "ingest" {
            let source = try job.sourceId.flatMap { try store.source(id: $0) }
            if let source, source.kind == "drive" {
                // A drive job resumes when the watcher finds the drive mounted (below).
                try store.updateJob(job.id, state: .cancelled, error: "interrupted; the drive is read again when it is mounted")
                continue
            }
            logger.info("resuming ingest job \(job.id) of \(job.target)")
            enqueue(Work(job: job, path: job.target, source: nil))
        }
        let t = Thread { [weak self] in self?.loop() }
        t.name = "twinbrain-intake"
        thread = t
        t.start()
        drives.start { [weak self] added, removed in self?.drivesChanged(added: added, removed: removed) }
        // Drives the store thinks present but that are not mounted now were removed while we were down.
        let mounted = Set(condition.withLock { mountedDrives.values })
        for s in presentBefore where !mounted.contains(s.key) { try store.markSourceAbsent(id: s.id) }
        logger.info("watching drives under \(drives.mediaRoots.joined(separator: ", ")) (events: \(drives.eventSource))")
    }

    func stop() {
        drives.stop()
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }

    /// Registers an ingest job and queues it.
    func submit(path: String, source: SourceInfo? = nil) throws -> Job {
        guard ingester != nil else { throw APIError(.unavailable, "intake is disabled: \(helperProblem ?? "unknown problem")") }
        let job = try store.createJob(kind: "ingest", target: path)
        enqueue(Work(job: job, path: path, source: source))
        return job
    }

    private func enqueue(_ work: Work) {
        condition.withLock {
            queue.append(work)
            condition.signal()
        }
    }

    func drivesChanged(added: [Mount], removed: [Mount]) {
        for m in removed {
            guard let key = condition.withLock({ mountedDrives.removeValue(forKey: m.mountPoint) }) else { continue }
            condition.withLock { _ = removedDrives.insert(key) }
            do {
                if let s = try store.source(key: key) { try store.markSourceAbsent(id: s.id) }
                logger.notice("drive \(m.device) at \(m.mountPoint) removed: its documents stay")
            } catch {
                logger.error("could not record the removal of \(m.mountPoint): \(error)")
            }
        }
        for m in added {
            let info = drives.identify(m)
            condition.withLock {
                mountedDrives[m.mountPoint] = info.key
                removedDrives.remove(info.key)
            }
            if !m.isReadOnly { logger.warning("drive at \(m.mountPoint) is mounted read-write; twinbrain only reads it") }
            guard access(m.mountPoint, R_OK | X_OK) == 0 else {
                // Mounted, but not for us (permissions): shown as unsupported, with the reason in the journal.
                logger.error("drive at \(m.mountPoint) is not readable by twinbraind's user: \(String(cString: strerror(errno)))")
                _ = try? store.sourceSeen(info, state: .unsupported)
                continue
            }
            do {
                try store.sourceSeen(info)
                let job = try submit(path: m.mountPoint, source: info)
                logger.notice("drive \(info.label ?? info.key) (\(m.fstype), \(m.device)) at \(m.mountPoint): reading it as job \(job.id)")
            } catch {
                logger.error("cannot read the drive at \(m.mountPoint): \(error)")
            }
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping { condition.unlock(); return }
            let work = queue.removeFirst()
            running += 1
            condition.unlock()
            defer {
                condition.withLock { running -= 1 }
                onJobFinished()
            }
            guard let ingester else { continue }
            let start = Date()
            let job = work.job, path = work.path
            do {
                let isCancelled: @Sendable () -> Bool = { [weak self] in
                    guard let self else { return true }
                    return self.condition.withLock {
                        self.stopping || self.cancelledJobs.contains(job.id) || work.source.map { self.removedDrives.contains($0.key) } == true
                    }
                }
                let s = try ingester.run(job: job, path: path, source: work.source, isCancelled: isCancelled) { [weak self] error, file in
                    self?.waitForSpace(after: error, reading: file, isCancelled: isCancelled) ?? false
                }
                let seconds = String(format: "%.1f", Date().timeIntervalSince(start))
                logger.info("ingest job \(job.id) of \(path) done in \(seconds) s: \(s.added) added, \(s.updated) updated, \(s.unchanged) unchanged, \(s.failed) failed, \(s.skipped) skipped")
            } catch is Ingester.Cancelled {
                if condition.withLock({ stopping }) {
                    // Left unfinished in the store: the next start resumes it.
                    try? store.updateJob(job.id, state: .running)
                } else if let key = work.source?.key, condition.withLock({ removedDrives.contains(key) }) {
                    try? store.updateJob(job.id, error: "the drive was removed; it is read again when it returns")
                }
                logger.info("ingest job \(job.id) of \(path) stopped")
            } catch {
                if let key = work.source?.key, condition.withLock({ removedDrives.contains(key) }) {
                    // A pulled drive fails reads in every way; say what happened.
                    try? store.updateJob(job.id, state: .cancelled, error: "the drive was removed; it is read again when it returns")
                    logger.notice("ingest job \(job.id) of \(path) stopped: the drive was removed")
                } else {
                    logger.error("ingest job \(job.id) of \(path) failed: \(error)")
                }
            }
        }
    }
}
