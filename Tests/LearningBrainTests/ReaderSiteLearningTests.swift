import Foundation
import LearningBrain
import MainBrain
import XCTest

/// The reader learning on site: the questions the box writes about a document, the adapter
/// fitted on them, its examples on disk, and exact forgetting (T6's proof, for the reader).
final class ReaderSiteLearningTests: XCTestCase {
    static let releaseNotes: [(header: String, text: String)] = [
        ("E.3. Release 7.2 › E.3.1. Overview", "Release date: 2031-03-14\nThis release contains a variety of fixes from 7.1."),
        ("E.3. Release 7.2 › E.3.2. Changes", """
            - Fix crash when a sensor table is vacuumed during replay (Ana Horvat, Li Wei)
            - Make the backup tool honour its --compress level (Bogdan Ilic)
            - Avoid a leak in the logical replication launcher (Mira Okafor)
            """),
    ]

    func testQuestionsOfEachKindWithTheirAnswers() {
        let questions = ReaderQuestions.synthesise(passages: Self.releaseNotes, limit: 12)
        func answers(_ kind: SyntheticQuestion.Kind) -> [String] { questions.filter { $0.kind == kind }.map(\.answer) }
        XCTAssertEqual(answers(.credit), ["Ana Horvat, Li Wei", "Bogdan Ilic", "Mira Okafor"])
        XCTAssertEqual(Set(answers(.heading)), ["7.2"], "the version the headings give, never a section number (E.3.2)")
        XCTAssertTrue(answers(.cloze).contains("--compress"), "\(answers(.cloze))")
        XCTAssertEqual(ReaderQuestions.cloze("Hotel costs are reimbursed up to 140 euros per night in Vienna.")?.word, "140")
        XCTAssertEqual(answers(.field), ["2031-03-14"])
        let credit = questions.first { $0.kind == .credit }!
        XCTAssertTrue(credit.question.contains("Fix crash when a sensor table is vacuumed during replay"), credit.question)
        XCTAssertFalse(credit.question.contains("Ana Horvat"), "the question does not hold its answer")
        for q in questions {
            let passage = Self.releaseNotes[q.passage]
            XCTAssertTrue((passage.header + "\n" + passage.text).contains(q.answer), "\(q.answer) is in its passage")
            if let d = q.distractor { XCTAssertFalse(Self.releaseNotes[d].text.contains(q.answer), "the distractor does not answer") }
        }
        XCTAssertEqual(questions, ReaderQuestions.synthesise(passages: Self.releaseNotes, limit: 12), "the same document, the same questions")
        XCTAssertEqual(ReaderQuestions.synthesise(passages: Self.releaseNotes, limit: 3).map(\.kind), [.credit, .heading, .cloze],
                       "a small limit is spread over the kinds")
    }

    func testChineseLinesGetChineseQuestions() {
        let questions = ReaderQuestions.synthesise(passages: [("1.2.3. 文件权限", "使用 chmod 命令可以修改文件的权限，例如只读。")])
        let heading = questions.first { $0.kind == .heading }
        XCTAssertEqual(heading?.answer, "1.2.3")
        XCTAssertTrue(heading?.question.contains("哪一节") ?? false, heading?.question ?? "no heading question")
        let cloze = questions.first { $0.kind == .cloze }
        XCTAssertEqual(cloze?.answer, "chmod")
        XCTAssertTrue(cloze?.question.contains("使用 ____ 命令") ?? false, cloze?.question ?? "no cloze question")
    }

    func testPlainLinesAreNotMistakenForCredits() {
        XCTAssertNil(ReaderQuestions.credit("The fridge is cleared on Fridays (see below)."))
        XCTAssertNil(ReaderQuestions.credit("Fix it (x)"))
        XCTAssertEqual(ReaderQuestions.credit("The coffee machine is descaled every Tuesday by Bogdan Ilic.")?.names, "Bogdan Ilic")
        let prose = ReaderQuestions.credit("The coffee machine on floor 2 is maintained by Bogdan every Tuesday.")
        XCTAssertEqual(prose?.names, "Bogdan")
        XCTAssertEqual(prose?.subject, "The coffee machine on floor 2 is maintained every Tuesday")
        XCTAssertNil(ReaderQuestions.credit("Flights are approved by the finance director for long journeys."))
        XCTAssertNil(ReaderQuestions.field("See https://example.org/a: the page"))
    }

    /// Made-up examples: candidate 2 is the answer when the question's first feature is high.
    static func examples(count: Int, rank: Int, seed: UInt64) -> [ReaderExample] {
        var state = seed
        func next() -> Float { state = state &* 6364136223846793005 &+ 1442695040888963407; return Float(state >> 40) / Float(1 << 24) - 0.5 }
        let tw = ReaderAdapter.tokenWidth(rank: rank), qw = ReaderAdapter.questionWidth(rank: rank), n = 6
        return (0..<count).map { k in
            func inputs() -> ReaderAdapter.HeadInputs {
                var question = (0..<qw).map { _ in next() }
                question[qw - 1] = 1
                var tokens = (0..<n * tw).map { _ in next() }
                tokens[2 * tw] = 1
                return .init(base: (0...n).map { _ in next() }, tokens: tokens, question: question)
            }
            let answerable = k % 4 != 3
            return ReaderExample(start: inputs(), end: inputs(), nullLexical: [next(), 1], starts: answerable ? [2] : [], ends: answerable ? [2] : [])
        }
    }

    func testTheAdapterFitsItsExamplesTheSameWayEveryTime() {
        let rank = 4, examples = Self.examples(count: 40, rank: rank, seed: 7)
        let zero = ReaderAdapter(rank: rank)
        let fitted = ReaderAdapterFitting().fit(examples, rank: rank)
        XCTAssertEqual(fitted, ReaderAdapterFitting().fit(examples, rank: rank), "no randomness: the same adapter to the bit")
        func loss(_ a: ReaderAdapter) -> Float {
            examples.reduce(0) { total, e in
                let p = ReaderAdapter.logSoftmax(ReaderAdapter.scores(e.start, a.start, nullLexical: e.nullLexical, rank: rank))
                return total - (e.answerable ? p[2] : p[p.count - 1])
            }
        }
        XCTAssertLessThan(loss(fitted), 0.5 * loss(zero), "the fit learns where the answers are")
        // All zeros is the shipped head exactly.
        let e = examples[0]
        XCTAssertEqual(ReaderAdapter.scores(e.start, zero.start, nullLexical: e.nullLexical, rank: rank), e.start.base)
    }

    func testExamplesRoundTripThroughTheirFileAndDamageIsRefused() throws {
        let rank = 4, examples = Self.examples(count: 5, rank: rank, seed: 3)
        let data = ReaderExampleFile.encoded(examples, document: 42, shard: "docs/pg", rank: rank, reader: "reader-a")
        let read = try ReaderExampleFile.decoded(data, rank: rank, reader: "reader-a")
        XCTAssertEqual(read.document, 42)
        XCTAssertEqual(read.shard, "docs/pg")
        XCTAssertEqual(read.examples, examples)
        XCTAssertThrowsError(try ReaderExampleFile.decoded(data, rank: rank, reader: "reader-b"), "made for another reader")
        XCTAssertThrowsError(try ReaderExampleFile.decoded(data.prefix(data.count - 9), rank: rank, reader: "reader-a"), "truncated")
        var flipped = data
        flipped[40] ^= 0x10
        XCTAssertThrowsError(try ReaderExampleFile.decoded(flipped, rank: rank, reader: "reader-a"), "a flipped bit")
    }

    /// T6 for the reader: learn three documents, forget one, and the adapter is, to the bit, the
    /// one a box that only ever learned the other two fits. Needs the default model.
    func testForgettingADocumentGivesTheAdapterOfABoxThatNeverLearnedIt() throws {
        guard let path = DefaultModel.path() else { throw XCTSkip("needs the default model: run `make model`") }
        let gguf = try GGUFFile(path: path)
        let tokenizer = try Tokenizer(gguf: gguf)
        let template = try ChatTemplate(source: gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer)
        let model = try Model(gguf: gguf)
        guard let weights = ReaderWeights.shipped(forShape: FittedKeyspace.shape(model.config), sha256: { DefaultModel.sha256 }) else {
            throw XCTSkip("no reader shipped for this model")
        }
        let documents: [Int64: (String, [(header: String, text: String)])] = [
            1: ("notes/release-7-2.txt", Self.releaseNotes),
            2: ("notes/release-7-3.txt", [("E.2. Release 7.3 › E.2.2. Changes", """
                - Fix a crash of the sensor importer on empty files (Tomas Novak)
                - Make the scheduler honour its --max-jobs limit (Sara Lindqvist, Ana Horvat)
                """)]),
            3: ("handbook/kitchen.txt", [("Kitchen › Coffee machine", """
                Maintainer: Bogdan Ilic
                The coffee machine is descaled every second Tuesday by Bogdan Ilic.
                """)]),
        ]
        func learned(_ ids: [Int64]) throws -> [Int64: [ReaderExample]] {
            var site = ReaderSiteLearning(model: model, tokenizer: tokenizer, template: template, reader: Reader(weights: weights))
            site.questionsPerDocument = 4
            var out: [Int64: [ReaderExample]] = [:]
            for id in ids { out[id] = try site.learn(path: documents[id]!.0, passages: documents[id]!.1).examples }
            return out
        }
        var all = try learned([1, 2, 3])
        XCTAssertTrue(all.values.allSatisfy { !$0.isEmpty }, "every document gives examples")
        let fitting = ReaderAdapterFitting()
        let ordered = { (docs: [Int64: [ReaderExample]]) in docs.keys.sorted().flatMap { docs[$0]! } }
        let withAll = fitting.fit(ordered(all), rank: weights.rank)
        all[2] = nil
        let forgotten = fitting.fit(ordered(all), rank: weights.rank)
        let never = try learned([1, 3])
        XCTAssertEqual(forgotten, fitting.fit(ordered(never), rank: weights.rank), "forgetting is exact")
        XCTAssertNotEqual(withAll, forgotten, "the forgotten document had changed the adapter")
        // So is the decision to use it: the same check on the same examples.
        XCTAssertEqual(ReaderSiteLearning.fit(all, rank: weights.rank).check, ReaderSiteLearning.fit(never, rank: weights.rank).check)
    }
}
