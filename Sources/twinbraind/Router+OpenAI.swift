import ControlAPI
import Foundation
import Hummingbird
import MainBrain
import NIOCore

/// OpenAI-compatible endpoints: the official clients work against the socket unchanged.
extension API {
    func checkModel(_ requested: String?) throws {
        if let requested, !requested.isEmpty, requested != state.modelID {
            throw APIError(.unknownModel, "the model '\(requested)' does not exist here; GET /v1/models lists '\(state.modelID)'")
        }
    }

    func options(maxTokens: Int?, temperature: Float?, topP: Float?, seed: UInt64?, stop: StopSequences?, n: Int?) throws -> GenerationOptions {
        if let n, n != 1 { throw APIError(.badRequest, "n must be 1 (one choice per request)") }
        var o = GenerationOptions()
        o.maxTokens = maxTokens
        o.temperature = temperature
        o.topP = topP
        o.seed = seed
        o.stop = stop?.values
        // OpenAI's sampling has no top-k or min-p: keep only what the client asked for.
        o.topK = 0
        o.minP = 0
        if o.topP == nil { o.topP = 1 }
        return o
    }

    /// One server-sent event carrying `value` as JSON.
    @Sendable static func sse<T: Encodable>(_ value: T) throws -> String {
        "data: " + String(decoding: try JSONEncoder().encode(value), as: UTF8.self) + "\n\n"
    }

    static func finishReason(_ r: StopReason) -> String { r == .maxTokens ? "length" : "stop" }

    func openAIChat(_ request: Request, _ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .user)
        let scheduler = try await readyScheduler()
        let body = try await decode(OpenAIChatRequest.self, from: request.body)
        try checkModel(body.model)
        let o = try options(maxTokens: body.maxCompletionTokens ?? body.maxTokens, temperature: body.temperature, topP: body.topP,
                            seed: body.seed, stop: body.stop, n: body.n)
        let (prompt, knowledge) = try knowledgeChatPrompt(body.messages, knowledge: body.knowledge, scheduler: scheduler)
        let generation = try makeRequest(prompt: prompt, options: o, knowledge: knowledge)
        let store = state.store
        let id = "chatcmpl-\(UUID().uuidString.lowercased())", created = Int(Date().timeIntervalSince1970), model = state.modelID
        if body.stream == true {
            let run = try start(generation, scheduler: scheduler, knowledge: knowledge, owner: peer.uid)
            let includeUsage = body.streamOptions?.includeUsage == true
            let first = try Self.sse(OpenAIChatChunk(id: id, created: created, model: model, role: "assistant", content: "", finishReason: nil))
            return streamingResponse(contentType: "text/event-stream", run, leading: [first], lines: { event in
                switch event {
                case let .text(piece):
                    return [try Self.sse(OpenAIChatChunk(id: id, created: created, model: model, content: piece, finishReason: nil))]
                case let .finished(result, _):
                    var lines = [try Self.sse(OpenAIChatChunk(id: id, created: created, model: model, content: nil,
                                                         finishReason: Self.finishReason(result.stopReason), sources: knowledge?.sources(store: store),
                                                evidence: knowledge?.evidence(answer: result.text)))]
                    if includeUsage {
                        lines.append(try Self.sse(OpenAIChatChunk(id: id, created: created, model: model,
                                                             usage: OpenAIUsage(prompt: result.promptTokens, completion: result.ids.count))))
                    }
                    return lines
                }
            }, failure: { error in
                (try? Self.sse(ErrorBody(code: .internalError, message: "\(error)"))) ?? nil
            }, trailer: ["data: [DONE]\n\n"])
        }
        let (_, result, _) = try await generateWhole(generation, scheduler: scheduler, knowledge: knowledge, owner: peer.uid, request: request)
        return try Self.json(OpenAIChatResponse(id: id, created: created, model: model, text: result.text,
                                                finishReason: Self.finishReason(result.stopReason),
                                                usage: OpenAIUsage(prompt: result.promptTokens, completion: result.ids.count),
                                                sources: knowledge?.sources(store: store),
                                                evidence: knowledge?.evidence(answer: result.text)))
    }

    func openAICompletion(_ request: Request, _ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .user)
        let scheduler = try await readyScheduler()
        let body = try await decode(OpenAICompletionRequest.self, from: request.body)
        try checkModel(body.model)
        let o = try options(maxTokens: body.maxTokens, temperature: body.temperature, topP: body.topP, seed: body.seed,
                            stop: body.stop, n: body.n)
        let (prompt, knowledge) = try knowledgePrompt(body.prompt.text, knowledge: body.knowledge, scheduler: scheduler)
        let generation = try makeRequest(prompt: prompt, options: o, knowledge: knowledge)
        let store = state.store
        let id = "cmpl-\(UUID().uuidString.lowercased())", created = Int(Date().timeIntervalSince1970), model = state.modelID
        if body.stream == true {
            let run = try start(generation, scheduler: scheduler, knowledge: knowledge, owner: peer.uid)
            let includeUsage = body.streamOptions?.includeUsage == true
            return streamingResponse(contentType: "text/event-stream", run, lines: { event in
                switch event {
                case let .text(piece):
                    return [try Self.sse(OpenAICompletionResponse(id: id, created: created, model: model, text: piece, finishReason: nil, usage: nil))]
                case let .finished(result, _):
                    let usage = includeUsage ? OpenAIUsage(prompt: result.promptTokens, completion: result.ids.count) : nil
                    return [try Self.sse(OpenAICompletionResponse(id: id, created: created, model: model, text: "",
                                                             finishReason: Self.finishReason(result.stopReason), usage: usage,
                                                             sources: knowledge?.sources(store: store),
                                                evidence: knowledge?.evidence(answer: result.text)))]
                }
            }, failure: { error in
                (try? Self.sse(ErrorBody(code: .internalError, message: "\(error)"))) ?? nil
            }, trailer: ["data: [DONE]\n\n"])
        }
        let (_, result, _) = try await generateWhole(generation, scheduler: scheduler, knowledge: knowledge, owner: peer.uid, request: request)
        return try Self.json(OpenAICompletionResponse(id: id, created: created, model: model, text: result.text,
                                                      finishReason: Self.finishReason(result.stopReason),
                                                      usage: OpenAIUsage(prompt: result.promptTokens, completion: result.ids.count),
                                                      sources: knowledge?.sources(store: store),
                                                evidence: knowledge?.evidence(answer: result.text)))
    }
}
