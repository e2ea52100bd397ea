import Foundation

/// What to generate.
public struct GenerationRequest: Sendable {
    public var prompt: [Int32]
    public var maxTokens: Int = 256
    public var sampling: SamplingParameters = .init()
    /// Generation ends at any of these strings; the string itself is not returned.
    public var stopStrings: [String] = []
    /// Extra stop tokens on top of the tokenizer's end-of-generation set.
    public var stopTokens: Set<Int32> = []
    /// Stop at the model's end tokens (off to reproduce a fixed-length continuation).
    public var stopAtEndOfGeneration = true

    public init(prompt: [Int32]) { self.prompt = prompt }
}

public enum StopReason: String, Sendable, Codable {
    case endOfGeneration = "stop"     // an end token or a stop string
    case maxTokens = "length"
    case cancelled
}

public struct GenerationResult: Sendable {
    public var ids: [Int32] = []
    public var text = ""
    public var stopReason: StopReason = .maxTokens
    public var promptTokens = 0
    /// Seconds to evaluate the prompt, and to generate everything after it.
    public var prefillSeconds = 0.0
    public var generateSeconds = 0.0
}

/// Takes over the model's forward step during generation, to change the next-token distribution
/// (the learning brain joins the main brain here). Returns one row: logits or log-probabilities
/// for the position after `input`, which continues what `cache` holds. Runs on the generating
/// thread.
public protocol NextTokenPredictor: AnyObject {
    func nextLogits(_ input: [Int32], cache: KVCache) throws -> Logits
}

/// Runs generation on a model and its tokenizer, one request at a time.
public final class Generator: @unchecked Sendable {
    public let model: Model
    public let tokenizer: Tokenizer

    public init(model: Model, tokenizer: Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// Generates synchronously, handing each new piece of text to `onText` as soon as it
    /// is certain (not part of a possible stop string). `isCancelled` is polled per token.
    public func generate(
        _ request: GenerationRequest, cache: KVCache? = nil, predictor: NextTokenPredictor? = nil,
        isCancelled: () -> Bool = { false }, onText: (String) -> Void = { _ in }
    ) throws -> GenerationResult {
        let cache = cache ?? model.makeCache(capacity: min(model.config.contextLength, request.prompt.count + request.maxTokens))
        cache.clear()
        var result = GenerationResult()
        result.promptTokens = request.prompt.count
        guard request.maxTokens > 0 else { return result }
        var sampler = Sampler(request.sampling)
        var detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        var stops = request.stopTokens
        if request.stopAtEndOfGeneration { stops.formUnion(tokenizer.endOfGeneration) }
        var history = request.prompt
        var text = ""        // all text so far
        var emitted = 0      // characters of `text` handed out
        let start = DispatchTime.now()
        func step(_ input: [Int32]) throws -> Logits {
            try predictor?.nextLogits(input, cache: cache) ?? model.forward(input, cache: cache, logits: .last)
        }
        var logits = try step(request.prompt)
        let prefilled = DispatchTime.now()
        result.prefillSeconds = Double(prefilled.uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        func finished() -> GenerationResult {
            result.generateSeconds = Double(DispatchTime.now().uptimeNanoseconds - prefilled.uptimeNanoseconds) / 1e9
            return result
        }

        func emit(upTo end: Int) {
            guard end > emitted else { return }
            let start = text.index(text.startIndex, offsetBy: emitted)
            let stop = text.index(text.startIndex, offsetBy: end)
            onText(String(text[start..<stop]))
            emitted = end
        }

        while true {
            if isCancelled() { result.stopReason = .cancelled; break }
            let next = sampler.sample(logits.row(0), history: history)
            if stops.contains(next) { result.stopReason = .endOfGeneration; break }
            result.ids.append(next)
            history.append(next)
            text += detokenizer.append(next)
            if let cut = Self.firstStop(in: text, stopStrings: request.stopStrings) {
                text = String(text[..<cut])
                emit(upTo: text.count)
                result.stopReason = .endOfGeneration
                result.text = text
                return finished()
            }
            emit(upTo: text.count - Self.heldBack(text, stopStrings: request.stopStrings))
            if result.ids.count >= request.maxTokens || cache.count >= cache.capacity {
                result.stopReason = .maxTokens
                break
            }
            logits = try step([next])
        }
        text += detokenizer.flush()
        if let cut = Self.firstStop(in: text, stopStrings: request.stopStrings) { text = String(text[..<cut]) }
        emit(upTo: text.count)
        result.text = text
        return finished()
    }

    /// Streams text pieces; ending the iteration early (or cancelling the task) stops generation.
    /// The work runs on a detached task: callers that must keep the cooperative pool free (the
    /// daemon) run `generate` on a thread of their own instead.
    public func stream(_ request: GenerationRequest) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            let cancelled = CancellationFlag()
            continuation.onTermination = { _ in cancelled.set() }
            Task.detached { [self] in
                do {
                    _ = try generate(request, isCancelled: { cancelled.isSet || Task.isCancelled }) { piece in
                        continuation.yield(piece)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
        }
    }

    static func firstStop(in text: String, stopStrings: [String]) -> String.Index? {
        stopStrings.compactMap { $0.isEmpty ? nil : text.range(of: $0)?.lowerBound }.min()
    }

    /// Characters at the end of `text` that could begin a stop string (held until resolved).
    static func heldBack(_ text: String, stopStrings: [String]) -> Int {
        var held = 0
        for stop in stopStrings where !stop.isEmpty {
            for length in stride(from: min(stop.count - 1, text.count), to: held, by: -1)
            where text.hasSuffix(stop.prefix(length)) {
                held = length
                break
            }
        }
        return held
    }
}

/// A flag set from one thread and read from another.
final class CancellationFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
