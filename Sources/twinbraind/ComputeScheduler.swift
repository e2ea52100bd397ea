import Dispatch
import Foundation
import MainBrain
import Metrics

/// The single owner of the model and the BLAS threads, on a dedicated thread (never NIO's event
/// loops or Swift's cooperative pool, which must not block).
///
/// Generations share it by continuous batching: up to `slots` run at once, each with its own KV
/// cache, and one decode step advances all of them with one read of the weights
/// (`Generator.step`). A generation joins at any step and leaves when done or when its client
/// goes. Other work (learning a document, forgetting) runs as one-shot jobs. Long forwards, a
/// job's or a prompt's, run in chunks of `chunkRows` (`Model.chunking`), and between two chunks
/// the running generations take decode steps (and, inside a job, waiting questions are admitted
/// first), so learning yields to questions at chunk boundaries and no stream stalls for longer
/// than a chunk. Waiting generations are admitted by owner, the one with the fewest running
/// first, so one script cannot starve the office. At most `capacity` jobs wait; beyond that,
/// submit refuses (429). Finished generations' caches stay in `prefixes` (when given), so a
/// prompt that begins as an earlier one did (a conversation's earlier turns) evaluates the rest only.
final class ComputeScheduler: @unchecked Sendable {
    enum SubmitError: Error {
        case overloaded(waiting: Int)
        case stopping
    }

    /// One unit of work: a one-shot job on the compute thread, or a generation.
    final class Job: @unchecked Sendable {
        enum Kind {
            case work((Generator, Job) -> Void)
            case generation(Generation)
        }

        /// A generation's two ends on the compute thread: `begin` builds its session (its
        /// predictor, its cache), `end` hands out the result or the error.
        struct Generation {
            let begin: (Generator) throws -> GenerationSession
            let end: (Result<GenerationResult, Error>, _ queueSeconds: Double) -> Void
        }

        let kind: Kind
        /// The caller's uid, for the fair share of slots.
        let owner: UInt32?
        let enqueued = DispatchTime.now()
        private let lock = NSLock()
        private var cancelled = false

        init(work: @escaping (Generator, Job) -> Void) {
            kind = .work(work)
            owner = nil
        }

        init(owner: UInt32?, generation: Generation) {
            kind = .generation(generation)
            self.owner = owner
        }

        var isCancelled: Bool { lock.withLock { cancelled } }
        /// Called when the client goes away: a generation leaves its slot before the next step.
        func cancel() { lock.withLock { cancelled = true } }

        var isGeneration: Bool { if case .generation = kind { true } else { false } }

        var queueSeconds: Double { Double(DispatchTime.now().uptimeNanoseconds - enqueued.uptimeNanoseconds) / 1e9 }
    }

    /// A generation holding a slot.
    private struct Running {
        let job: Job
        let generation: Job.Generation
        let session: GenerationSession
        let queueSeconds: Double
    }

    let generator: Generator
    let capacity: Int
    let slots: Int
    /// Compute thread only.
    private let prefixes: PrefixCache?
    private let condition = NSCondition()
    private var waiting: [Job] = []
    /// Slots in use, by owner (the compute thread's `running` mirrored for other threads).
    private var slotOwners: [UInt32?] = []
    private var busyWithWork = false
    private var stopped = false
    private var thread: Thread?
    /// What the compute loop does ("generating for 3 requests"); read by /v1/status.
    private var activityText = "idle"
    /// Last sign of life from the compute loop (uptime ns): the watchdog pings only while it is fresh.
    private var heartbeat = DispatchTime.now().uptimeNanoseconds
    /// Test-only stall (see `stall(seconds:)`).
    private var stallUntil: UInt64 = 0
    /// Decode steps taken and the sequences they advanced (for the mean batch size).
    private var steps = 0
    private var stepRows = 0
    /// The last few seconds' decode steps (uptime ns, sequences advanced): the current rates.
    private var recentSteps: [(at: UInt64, rows: Int)] = []
    static let rateWindowNanoseconds: UInt64 = 10_000_000_000

    /// Compute-thread state.
    private var running: [Running] = []
    /// What the compute thread is inside of, innermost last: a job, or a prompt's evaluation.
    private enum Phase { case work, prompt }
    private var phases: [Phase] = []
    /// When the innermost job last resumed (uptime ns): between its chunks, decode steps take as
    /// long as it computed since, so learning gets about half of the time while people ask.
    private var workResumed: UInt64 = 0
    /// Rows a long forward evaluates between two decode steps while generations run (about 0.2 s
    /// on the default model), and a job's chunk while none runs (a question arriving waits for
    /// one at most). Each chunk of the exact arithmetic reads the weights again, so a prompt
    /// with nobody else to serve runs unchunked.
    static let chunkRows = 128
    static let idleJobChunkRows = 256

    private func chunkRows() -> Int {
        switch phases.last {
        case .prompt?: running.isEmpty ? Int.max : Self.chunkRows
        case .work?: running.isEmpty && condition.withLock({ !waiting.contains(where: \.isGeneration) }) ? Self.idleJobChunkRows : Self.chunkRows
        case nil: Int.max
        }
    }

    init(generator: Generator, capacity: Int, slots: Int = 1, prefixCacheBytes: Int = 0) {
        precondition(slots >= 1)
        self.generator = generator
        self.capacity = capacity
        self.slots = slots
        prefixes = prefixCacheBytes > 0 ? PrefixCache(model: generator.model, byteLimit: prefixCacheBytes) : nil
    }

    /// Drops every kept prefix (their keys and values were computed from texts that may have
    /// just been forgotten). Blocks until the compute thread has.
    func forgetPrefixes() throws {
        guard let prefixes else { return }
        try runAndWait(activity: "forgetting kept prompts") {
            prefixes.removeAll()
            Gauge(label: "twinbrain_prefix_cache_bytes").record(0)
        }
    }

    func start() {
        generator.model.chunking = .init(rows: { [unowned self] in chunkRows() }, between: { [unowned self] in betweenChunks() })
        let t = Thread { [self] in loop() }
        t.name = "twinbrain-compute"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    /// Another model's forwards, run inside this scheduler's jobs (a keyspace fit for an imported
    /// model), yield between chunks as the serving model's do.
    func lendChunking(to model: Model) { model.chunking = generator.model.chunking }

    /// Queues a job, or refuses it when `capacity` jobs already wait (a generation is taken
    /// whenever a slot is free, whatever the queue).
    func submit(_ job: Job) throws {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped else { throw SubmitError.stopping }
        let idle = slotOwners.isEmpty && !busyWithWork && waiting.isEmpty
        let freeSlot = job.isGeneration && slotOwners.count + waiting.filter(\.isGeneration).count < slots
        guard waiting.count < capacity || idle || freeSlot else {
            throw SubmitError.overloaded(waiting: waiting.count)
        }
        waiting.append(job)
        condition.signal()
    }

    /// Stops taking jobs; queued ones are cancelled, running generations are asked to stop.
    func shutdown() {
        condition.lock()
        stopped = true
        for job in waiting { job.cancel() }
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until the compute thread has finished its last job: after `shutdown`, or before
    /// it to let every queued and running request finish (a model switch).
    func waitUntilIdle(timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let busy = condition.withLock { !slotOwners.isEmpty || busyWithWork || !waiting.isEmpty }
            if !busy { return }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    struct Snapshot {
        var running = 0
        var waiting = 0
        var activity = "idle"
        var slotsInUse = 0
        /// Sequences a decode step advanced, on average since the start.
        var meanBatch = 0.0
        /// Tokens generated per second over the last `rateWindowNanoseconds`, by all sequences
        /// together and per sequence.
        var tokensPerSecond = 0.0
        var tokensPerSecondPerSequence = 0.0
    }

    var snapshot: Snapshot {
        condition.withLock {
            let now = DispatchTime.now().uptimeNanoseconds
            let recent = recentSteps.filter { now - $0.at < Self.rateWindowNanoseconds }
            let tokens = recent.reduce(0) { $0 + $1.rows }
            let span = recent.first.map { Double(now - $0.at) / 1e9 } ?? 0
            let rate = span > 0.05 ? Double(tokens) / span : 0
            return Snapshot(running: slotOwners.count + (busyWithWork ? 1 : 0), waiting: waiting.count, activity: activityText,
                            slotsInUse: slotOwners.count, meanBatch: steps > 0 ? Double(stepRows) / Double(steps) : 0,
                            tokensPerSecond: rate, tokensPerSecondPerSequence: recent.isEmpty ? 0 : rate * Double(recent.count) / Double(tokens))
        }
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

    // MARK: - The compute thread

    private func loop() {
        while true {
            condition.lock()
            while waiting.isEmpty && running.isEmpty && !stopped && stallUntil == 0 {
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
            if stopped { for r in running { r.job.cancel() } }
            if waiting.isEmpty && running.isEmpty && stopped { condition.unlock(); return }
            let starting = takeGenerations()
            let next = starting.isEmpty ? waiting.firstIndex { !$0.isGeneration }.map { waiting.remove(at: $0) } : nil
            if next != nil { busyWithWork = true }
            heartbeat = DispatchTime.now().uptimeNanoseconds
            condition.unlock()

            if !starting.isEmpty {
                admit(starting)
            } else if let next, case let .work(work) = next.kind {
                runWork(work, next)
            }
            if !running.isEmpty { decodeStep() }

            condition.withLock {
                busyWithWork = false
                slotOwners = running.map(\.job.owner)
                activityText = running.isEmpty ? "idle" : "generating for \(running.count) request\(running.count == 1 ? "" : "s")"
                heartbeat = DispatchTime.now().uptimeNanoseconds
            }
        }
    }

    /// The waiting generations to start now (under the lock), one per free slot: the owner with
    /// the fewest running first (then the oldest). They start together (`admit`). When none
    /// does, the loop takes the oldest one-shot job.
    private func takeGenerations() -> [Job] {
        var runningBy = Dictionary(grouping: running, by: \.job.owner).mapValues(\.count)
        var taken: [Job] = []
        while running.count + taken.count < slots {
            let candidates = waiting.indices.filter { waiting[$0].isGeneration }
            guard let i = candidates.min(by: { (runningBy[waiting[$0].owner] ?? 0, $0) < (runningBy[waiting[$1].owner] ?? 0, $1) })
            else { break }
            runningBy[waiting[i].owner, default: 0] += 1
            taken.append(waiting.remove(at: i))
        }
        // Counted as running from now on, so the scheduler never looks idle while they start.
        slotOwners += taken.map(\.owner)
        return taken
    }

    private func runWork(_ work: (Generator, Job) -> Void, _ job: Job) {
        setActivity("starting a job")
        phases.append(.work)
        defer { phases.removeLast() }
        workResumed = DispatchTime.now().uptimeNanoseconds
        work(generator, job)
    }

    /// Between two chunks of a long forward (`Model.chunking`). Inside a prompt's evaluation:
    /// one decode step for the running generations. Inside a job: waiting generations are
    /// admitted, then decode steps take as long as the job computed since it last resumed.
    private func betweenChunks() {
        switch phases.last {
        case .prompt?:
            if !running.isEmpty { decodeStep() }
        case .work?:
            let began = DispatchTime.now().uptimeNanoseconds
            let share = began - workResumed
            let starting = condition.withLock { stopped ? [] : takeGenerations() }
            if !starting.isEmpty { admit(starting) }
            repeat {
                if !running.isEmpty { decodeStep() }
            } while !running.isEmpty && DispatchTime.now().uptimeNanoseconds - began < share
            condition.withLock {
                slotOwners = running.map(\.job.owner)
                heartbeat = DispatchTime.now().uptimeNanoseconds
            }
            workResumed = DispatchTime.now().uptimeNanoseconds
        case nil:
            break
        }
    }

    /// Builds the generations' sessions and evaluates their prompts together (`Generator.prefill`:
    /// prompts that may share passes do); each holds a slot until done.
    private func admit(_ jobs: [Job]) {
        phases.append(.prompt)
        defer { phases.removeLast() }
        setActivity(jobs.count == 1 ? "evaluating a prompt" : "evaluating \(jobs.count) prompts")
        var starting: [Running] = []
        for job in jobs {
            guard case let .generation(generation) = job.kind else { continue }
            let queued = job.queueSeconds
            guard !job.isCancelled else { generation.end(.failure(CancellationError()), queued); continue }
            do {
                let session = try generation.begin(generator)
                starting.append(Running(job: job, generation: generation, session: session, queueSeconds: queued))
            } catch {
                generation.end(.failure(error), queued)
            }
        }
        let errors = generator.prefill(starting.map(\.session), prefixes: prefixes)
        for (entry, error) in zip(starting, errors) {
            if let error { entry.generation.end(.failure(error), entry.queueSeconds); continue }
            Timer(label: "twinbrain_time_to_first_token_seconds").recordSeconds(entry.queueSeconds + entry.session.result.prefillSeconds)
            if entry.session.isFinished { finish(entry) } else { running.append(entry) }
        }
    }

    /// One decode step for every running generation; the finished and the cancelled leave.
    private func decodeStep() {
        for r in running where r.job.isCancelled { r.session.cancel() }
        let active = running.filter { !$0.session.isFinished }
        if !active.isEmpty {
            do {
                let began = DispatchTime.now().uptimeNanoseconds
                try generator.step(active.map(\.session))
                let ended = DispatchTime.now().uptimeNanoseconds
                Timer(label: "twinbrain_inter_token_seconds").recordNanoseconds(Int64(ended - began))
                condition.withLock {
                    steps += 1
                    stepRows += active.count
                    recentSteps.append((ended, active.count))
                    if let first = recentSteps.first, ended - first.at > 2 * Self.rateWindowNanoseconds {
                        recentSteps.removeAll { ended - $0.at >= Self.rateWindowNanoseconds }
                    }
                }
            } catch {
                for r in active { r.generation.end(.failure(error), r.queueSeconds) }
                running.removeAll { r in active.contains { $0.job === r.job } }
            }
        }
        for r in running where r.session.isFinished { finish(r) }
        running.removeAll { $0.session.isFinished }
    }

    private func finish(_ r: Running) {
        if let prefixes {
            prefixes.keep(r.session)
            Gauge(label: "twinbrain_prefix_cache_bytes").record(prefixes.bytes)
        }
        r.generation.end(.success(r.session.result), r.queueSeconds)
    }
}
