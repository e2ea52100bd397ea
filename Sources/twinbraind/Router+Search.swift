import ControlAPI
import Foundation
import Hummingbird
import LearningBrain
import MainBrain
import Store

/// The retrieval test: what recall would put before the main brain for a question, and why.
extension API {
    func addSearchRoutes(to router: Router<DaemonContext>) {
        router.get("/v1/search") { request, context in try await search(request, context) }
    }

    func search(_ request: Request, _ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .user)
        let q = request.uri.queryParameters
        guard let question = q.get("q"), !question.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw APIError(.badRequest, "give the question as ?q=…")
        }
        let limit = Int(q.get("limit") ?? "\(state.configuration.knowledgePassages)") ?? -1
        guard (0...16).contains(limit) else { throw APIError(.badRequest, "limit must be 0…16") }
        let explanation = try RecallExplanation(question: question, index: state.store, limit: limit)
        let recall = explanation.recall
        let candidates = explanation.candidates.map { c in
            SearchResponse.Candidate(passageId: c.hit.passageId, documentId: c.hit.documentId, path: c.hit.path,
                                     source: c.hit.sourceLabel ?? c.hit.sourceKey, headings: Self.headings(c.hit.header),
                                     lineStart: c.hit.lines?.lowerBound, lineEnd: c.hit.lines?.upperBound, page: c.hit.page, score: c.hit.score,
                                     share: c.share, relativeScore: c.relativeScore, verdict: c.verdict.rawValue, text: c.hit.text)
        }
        let decision: String
        if !recall.passages.isEmpty {
            let documents = Set(recall.passages.map(\.documentId)).count
            decision = "\(recall.passages.count) passage\(recall.passages.count == 1 ? "" : "s") of \(documents) document\(documents == 1 ? "" : "s") "
                + "would be put before the main brain"
        } else if !recall.nearMisses.isEmpty {
            decision = "no passage holds enough of the question; \(recall.nearMisses.count) near miss\(recall.nearMisses.count == 1 ? " is" : "es are") "
                + "read only to say the documents do not answer"
        } else if candidates.isEmpty {
            decision = "no learned passage holds any of the question's words: the main brain answers alone"
        } else {
            decision = "no passage holds enough of the question: the main brain answers alone"
        }
        let evidence = explanation.evidence.map { KnowledgeUse.wire($0, passages: recall.passages) }
        let memory = try await memoryView(question: question, recall: recall)
        return try Self.json(SearchResponse(question: question, words: explanation.words, floor: PassageRelevance.floor,
                                            subjectFloor: PassageRelevance.subjectFloor, relativeFloor: Recall.relativeFloor, limit: limit,
                                            decision: decision, candidates: candidates, evidence: evidence, memory: memory))
    }

    static func headings(_ header: String) -> [String] {
        header.isEmpty ? [] : header.components(separatedBy: DocumentPassageBuilder.headerSeparator)
    }

    /// The token memory at the answer's first token: the question asked as `ask` asks it (with the
    /// recalled passages), the main brain's state there searched, the gate's weight for it.
    private func memoryView(question: String, recall: Recall) async throws -> SearchResponse.Memory? {
        guard let memory = state.memory, memory.status.entries > 0 else { return nil }
        let scheduler = try await readyScheduler()
        let (prompt, _) = try knowledgeChatPrompt([ChatMessageBody(role: "user", content: question)], knowledge: true, scheduler: scheduler)
        let knn = memory.knn
        let (found, weight) = try await DaemonState.onThread {
            try scheduler.runAndWait(activity: "searching the token memory for a retrieval test") { () -> ([TokenMemory.Neighbor], Double) in
                let input = Array(prompt)
                let (logits, queries) = try knn.mainBrain(input, cache: knn.model.makeCache(capacity: input.count), from: input.count - 1)
                let mixed = knn.mix(logits, queries: queries)
                return (mixed.neighbours[0], mixed.weights[0])
            }
        }
        var votes: [Int64: Double] = [:]
        for (n, v) in zip(found, KNNLanguageModel.votes(found)) { votes[n.document, default: 0] += v }
        let documents = try votes.sorted { $0.value > $1.value }.map { id, share in
            SearchResponse.Memory.Document(documentId: id, path: try state.store.document(id: id)?.path ?? "", votes: share)
        }
        var tokens: [String] = []
        for n in found where tokens.count < 5 {
            let piece = scheduler.generator.tokenizer.decode([n.value])
            if !tokens.contains(piece) { tokens.append(piece) }
        }
        return SearchResponse.Memory(entries: memory.status.entries, weight: weight, documents: documents, tokens: tokens)
    }
}
