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
    /// Leading prompt tokens whose keys and values came from an earlier generation (`PrefixCache`).
    public var reusedPromptTokens = 0
    /// Seconds to evaluate the prompt, and to generate everything after it.
    public var prefillSeconds = 0.0
    public var generateSeconds = 0.0
}

/// Takes over the model's forward step during generation, to change the next-token distribution
/// (the learning brain joins the main brain here). Runs on the generating thread.
public protocol NextTokenPredictor: AnyObject {
    /// One row (logits or log-probabilities) for the position after `input`, which continues
    /// what `cache` holds: the prompt, or a step not batched with others.
    func nextLogits(_ input: [Int32], cache: KVCache) throws -> Logits
    /// The hidden state a batched decode step records for `decoded` (nil: none).
    var decodeTap: TapPoint? { get }
    /// A batched decode step's row: from the main brain's logits for one decoded token (one row)
    /// and its state at `decodeTap`. Equals `nextLogits([token], cache:)` alone.
    func decoded(_ logits: Logits, state: ArraySlice<Float>?) -> Logits
    /// How much of `prompt` may come from a reused prefix (`PrefixCache`): a predictor that reads
    /// the hidden states of some prompt positions must see them evaluated.
    func reusablePrefix(of prompt: [Int32]) -> Int
    /// Work that the `decoded` calls of several sessions at one step share (one search of a
    /// shared memory for all their states); nil: none.
    var decodeSharing: DecodeSharing? { get }
}

extension NextTokenPredictor {
    public func reusablePrefix(of prompt: [Int32]) -> Int { prompt.count }
    public var decodeSharing: DecodeSharing? { nil }
}

/// What a batched decode step does once for several sessions' predictors: `prepare` is given
/// the states (at `NextTokenPredictor.decodeTap`) of every session sharing it before their
/// `decoded` calls, which then take their part of the shared work (each the same as alone);
/// `release` follows them, so nothing prepared outlives the step.
public protocol DecodeSharing: AnyObject {
    func prepare(states: [ArraySlice<Float>])
    func release()
}

/// One generation between its steps: the prompt's evaluation, then sampling, stop tokens and
/// strings and the text handed out as it becomes certain. `Generator.generate` runs one to the
/// end; a scheduler runs the decode steps of many together (`Generator.step`), each session's
/// tokens the same as alone.
public final class GenerationSession {
    public let request: GenerationRequest
    public let cache: KVCache
    let predictor: NextTokenPredictor?
    private let onText: (String) -> Void
    public private(set) var result = GenerationResult()
    /// The token the next decode step evaluates; nil before the prompt and once finished.
    public private(set) var next: Int32?
    public private(set) var isFinished = false
    private var sampler: Sampler
    private var detokenizer: StreamingDetokenizer
    private let stops: Set<Int32>
    private var history: [Int32]
    private var text = ""        // all text so far
    private var emitted = 0      // characters of `text` handed out
    private var prefilled = DispatchTime.now()

    init(request: GenerationRequest, cache: KVCache, tokenizer: Tokenizer, predictor: NextTokenPredictor?, onText: @escaping (String) -> Void) {
        self.request = request
        self.cache = cache
        self.predictor = predictor
        self.onText = onText
        sampler = Sampler(request.sampling)
        detokenizer = StreamingDetokenizer(tokenizer: tokenizer)
        var stops = request.stopTokens
        if request.stopAtEndOfGeneration { stops.formUnion(tokenizer.endOfGeneration) }
        self.stops = stops
        history = request.prompt
        result.promptTokens = request.prompt.count
    }

    /// Evaluates the prompt and takes the first token. The cache starts empty, or holding the
    /// longest prefix of the prompt `prefixes` has (then only the rest is evaluated).
    public func prefill(model: Model, prefixes: PrefixCache? = nil) throws {
        let start = DispatchTime.now()
        guard let input = promptInput(prefixes: prefixes) else { return }
        let logits = try predictor?.nextLogits(input, cache: cache) ?? model.forward(input, cache: cache, logits: .last)
        tookPrompt(logits.row(0), since: start)
    }

    /// The prompt's tokens left to evaluate once `prefixes` gave what it holds (the cache is
    /// filled with it); nil when there is nothing to generate (the session is finished).
    func promptInput(prefixes: PrefixCache?) -> [Int32]? {
        precondition(!isFinished && next == nil, "a session's prompt is evaluated once")
        cache.clear()
        guard request.maxTokens > 0 else { isFinished = true; return nil }
        let reusable = predictor?.reusablePrefix(of: request.prompt) ?? request.prompt.count
        let reused = prefixes?.restore(request.prompt, into: cache, limit: reusable) ?? 0
        result.reusedPromptTokens = reused
        return Array(request.prompt[reused...])
    }

    /// The prompt's last row, evaluated since `start`: the first token.
    func tookPrompt(_ row: ArraySlice<Float>, since start: DispatchTime) {
        prefilled = DispatchTime.now()
        result.prefillSeconds = Double(prefilled.uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        take(row)
    }

    /// Ends the generation where it is (the client went away), before its prompt or between steps.
    public func cancel() {
        guard !isFinished else { return }
        result.stopReason = .cancelled
        finish()
    }

    /// Takes a step's row: samples the next token, then stops, or hands out the text now certain
    /// and waits for the next step.
    func take(_ row: ArraySlice<Float>) {
        let token = sampler.sample(row, history: history)
        if stops.contains(token) { result.stopReason = .endOfGeneration; return finish() }
        result.ids.append(token)
        history.append(token)
        text += detokenizer.append(token)
        if let cut = Generator.firstStop(in: text, stopStrings: request.stopStrings) {
            text = String(text[..<cut])
            result.stopReason = .endOfGeneration
            return finish(flushing: false)
        }
        emit(upTo: text.count - Generator.heldBack(text, stopStrings: request.stopStrings))
        if result.ids.count >= request.maxTokens || cache.count >= cache.capacity {
            result.stopReason = .maxTokens
            return finish()
        }
        next = token
    }

    private func finish(flushing: Bool = true) {
        next = nil
        isFinished = true
        if flushing {
            text += detokenizer.flush()
            if let cut = Generator.firstStop(in: text, stopStrings: request.stopStrings) { text = String(text[..<cut]) }
        }
        emit(upTo: text.count)
        result.text = text
        result.generateSeconds = Double(DispatchTime.now().uptimeNanoseconds - prefilled.uptimeNanoseconds) / 1e9
    }

    private func emit(upTo end: Int) {
        guard end > emitted else { return }
        let start = text.index(text.startIndex, offsetBy: emitted)
        let stop = text.index(text.startIndex, offsetBy: end)
        onText(String(text[start..<stop]))
        emitted = end
    }
}

/// Runs generation on a model and its tokenizer.
public final class Generator: @unchecked Sendable {
    public let model: Model
    public let tokenizer: Tokenizer

    public init(model: Model, tokenizer: Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
    }

    /// A generation to run step by step (`GenerationSession.prefill`, then `step`), handing each
    /// new piece of text to `onText` as soon as it is certain (not part of a possible stop string).
    public func session(
        _ request: GenerationRequest, cache: KVCache? = nil, predictor: NextTokenPredictor? = nil, onText: @escaping (String) -> Void = { _ in }
    ) -> GenerationSession {
        let cache = cache ?? model.makeCache(capacity: min(model.config.contextLength, request.prompt.count + request.maxTokens))
        return GenerationSession(request: request, cache: cache, tokenizer: tokenizer, predictor: predictor, onText: onText)
    }

    /// Evaluates the prompts of sessions that start together and takes each one's first token
    /// (`GenerationSession.prefill` for each, in one call): the prompts of sessions without a
    /// predictor share passes (`Model.prefill`), each the same bits as alone; a predictor
    /// evaluates its session's prompt itself. Returns each session's error (nil: prefilled).
    public func prefill(_ sessions: [GenerationSession], prefixes: PrefixCache? = nil) -> [Error?] {
        let start = DispatchTime.now()
        var errors = [Error?](repeating: nil, count: sessions.count)
        var together: [(session: Int, input: [Int32])] = []
        for (i, session) in sessions.enumerated() {
            guard session.predictor == nil else {
                do { try session.prefill(model: model, prefixes: prefixes) } catch { errors[i] = error }
                continue
            }
            if let input = session.promptInput(prefixes: prefixes) { together.append((i, input)) }
        }
        guard !together.isEmpty else { return errors }
        do {
            let logits = try model.prefill(together.map { ($0.input, sessions[$0.session].cache) })
            for (row, entry) in together.enumerated() { sessions[entry.session].tookPrompt(logits.row(row), since: start) }
        } catch {
            // Refused before anything was evaluated (a prompt past its cache, a token out of
            // range): each prompt again alone, so only the one at fault fails.
            for (i, input) in together {
                do {
                    let logits = try model.forward(input, cache: sessions[i].cache, logits: .last)
                    sessions[i].tookPrompt(logits.row(0), since: start)
                } catch let e { errors[i] = e }
            }
        }
        return errors
    }

    /// One decode step of every session waiting for one: the main brain reads each session's
    /// last token in one batched pass (`Model.decode`), then each session's predictor and sampler
    /// take their row. Sessions finished or not yet prefilled are left alone.
    public func step(_ sessions: [GenerationSession]) throws {
        let active = sessions.filter { $0.next != nil }
        guard !active.isEmpty else { return }
        let points = Set(active.compactMap { $0.predictor?.decodeTap })
        let recorder = points.isEmpty ? nil : HiddenStateRecorder(points: points)
        let logits = try model.decode(active.map { ($0.next!, $0.cache) }, tap: recorder)
        var shared: [ObjectIdentifier: (sharing: DecodeSharing, states: [ArraySlice<Float>])] = [:]
        for (i, session) in active.enumerated() {
            guard let predictor = session.predictor, let sharing = predictor.decodeSharing, let point = predictor.decodeTap else { continue }
            shared[ObjectIdentifier(sharing), default: (sharing, [])].states.append(recorder!.row(point, i))
        }
        for (sharing, states) in shared.values where states.count > 1 { sharing.prepare(states: states) }
        defer { for (sharing, _) in shared.values { sharing.release() } }
        for (i, session) in active.enumerated() {
            guard let predictor = session.predictor else { session.take(logits.row(i)); continue }
            let row = Logits(rows: 1, vocab: logits.vocab, values: Array(logits.row(i)))
            let state = predictor.decodeTap.map { recorder!.row($0, i) }
            session.take(predictor.decoded(row, state: state).row(0))
        }
    }

    /// Generates synchronously, handing each new piece of text to `onText` as soon as it
    /// is certain (not part of a possible stop string). `isCancelled` is polled per token.
    public func generate(
        _ request: GenerationRequest, cache: KVCache? = nil, predictor: NextTokenPredictor? = nil,
        isCancelled: () -> Bool = { false }, onText: @escaping (String) -> Void = { _ in }
    ) throws -> GenerationResult {
        let session = session(request, cache: cache, predictor: predictor, onText: onText)
        if isCancelled() { session.cancel(); return session.result }
        try session.prefill(model: model)
        while !session.isFinished {
            if isCancelled() { session.cancel(); break }
            try step([session])
        }
        return session.result
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
