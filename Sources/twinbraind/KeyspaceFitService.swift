import Foundation
import LearningBrain
import Logging
import MainBrain

/// Fits the token memory's keyspace (key projection, inverted file, gate) for a serving model
/// that came without one, on the public calibration text shipped with the box (never on what
/// the box learned: forgetting stays exact), as one compute job whose forwards yield to
/// questions between chunks. The fit is written beside the imported models
/// (`<state_dir>/models/<sha256>.keyspace.json`); then `onFitted` reloads the model, which turns
/// the memory on and learns the stored documents into it.
final class KeyspaceFitService: @unchecked Sendable {
    let model: Model
    let tokenizer: Tokenizer
    let scheduler: ComputeScheduler
    let calibration: String
    let target: String
    let modelSHA256: String
    let logger: Logger
    let onFitted: @Sendable () -> Void
    /// Called once the fit ended, whatever the outcome (set before `start`).
    var onEnd: (@Sendable () -> Void)?
    private let lock = NSLock()
    private var stage: String?
    private var cancelled = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    /// The calibration text's three parts (`scripts/gate_calibration_text.py`).
    static let parts = ["memory", "related", "unrelated"]

    init(model: Model, tokenizer: Tokenizer, scheduler: ComputeScheduler, calibration: String, target: String, modelSHA256: String,
         logger: Logger, onFitted: @escaping @Sendable () -> Void) {
        self.model = model
        self.tokenizer = tokenizer
        self.scheduler = scheduler
        self.calibration = calibration
        self.target = target
        self.modelSHA256 = modelSHA256
        self.logger = logger
        self.onFitted = onFitted
    }

    /// Whether a fit can run: the calibration text is there, in its three parts.
    static func calibrationPresent(_ directory: String) -> Bool {
        parts.allSatisfy { !((try? FileManager.default.contentsOfDirectory(atPath: (directory as NSString).appendingPathComponent($0))) ?? []).isEmpty }
    }

    /// How far the fit is, for status; nil once it ended.
    var progress: String? { lock.withLock { stage } }

    func start() {
        lock.withLock { stage = "starting" }
        let t = Thread { [self] in
            defer {
                lock.withLock { stage = nil }
                onEnd?()
                finished.signal()
            }
            run()
        }
        t.name = "twinbrain-keyspace-fit"
        thread = t
        t.start()
    }

    /// Stops the fit at its next text; nothing is written.
    func stop() { lock.withLock { cancelled = true } }

    /// Stops the fit and waits until it has.
    func stopAndWait() {
        guard thread != nil else { return }
        stop()
        finished.wait()
        finished.signal()
    }

    private func run() {
        let began = Date()
        logger.info("fitting the token memory's keyspace for \(model.gguf.file.path) on the calibration text in \(calibration): the memory turns on when it is done, passages answer meanwhile")
        do {
            let texts = try Self.parts.map { part -> [String] in
                let directory = (calibration as NSString).appendingPathComponent(part)
                return try FileManager.default.contentsOfDirectory(atPath: directory).sorted().map {
                    try String(contentsOfFile: (directory as NSString).appendingPathComponent($0), encoding: .utf8)
                }
            }
            var fitting = GateFitting(model: model, tokenizer: tokenizer)
            fitting.progress = { [self] label, done, total in lock.withLock { stage = "\(label) \(done)/\(total)" } }
            fitting.isCancelled = { [self] in lock.withLock { cancelled } }
            let dimensions = min(FittedKeyspace.shippedDimensions, model.config.dim)
            let (result, projection, quantizer) = try scheduler.runAndWait(activity: "fitting the token memory's keyspace") {
                try fitting.run(memory: texts[0], related: texts[1], unrelated: texts[2], dimensions: dimensions)
            }
            guard let projection, let quantizer else { return }
            let record = GateFitting.keyspaceRecord(modelSHA256: modelSHA256, shape: FittedKeyspace.shape(model.config), result: result,
                                                    projection: projection, quantizer: quantizer,
                                                    origin: "by twinbraind on the calibration text in \(calibration)")
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try record.encoded().write(to: URL(fileURLWithPath: target), options: .atomic)
            logger.info("fitted the token memory's keyspace in \(Int(Date().timeIntervalSince(began))) s: \(target); \(record.figures.joined(separator: " "))")
            if !lock.withLock({ cancelled }) { onFitted() }
        } catch is CancellationError {
            logger.info("the token memory's keyspace fit stopped before its end; it starts again with the model")
        } catch {
            logger.error("cannot fit the token memory's keyspace: \(error); the token memory stays off, passages answer")
        }
    }
}
