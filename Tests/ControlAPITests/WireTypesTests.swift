import ControlAPI
import Foundation
import XCTest

final class WireTypesTests: XCTestCase {
    func testGenerateRequestIsFlatSnakeCaseJSON() throws {
        let body = Data(#"{"prompt":"hi","stream":true,"max_tokens":5,"top_p":0.5,"stop":["x"],"seed":3}"#.utf8)
        let r = try JSONDecoder().decode(GenerateRequest.self, from: body)
        XCTAssertEqual(r.prompt, "hi")
        XCTAssertEqual(r.stream, true)
        XCTAssertEqual(r.options.maxTokens, 5)
        XCTAssertEqual(r.options.topP, 0.5)
        XCTAssertEqual(r.options.stop, ["x"])
        XCTAssertEqual(r.options.seed, 3)
        let again = try JSONDecoder().decode(GenerateRequest.self, from: JSONEncoder().encode(r))
        XCTAssertEqual(again, r)
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(r)) as! [String: Any]
        XCTAssertNotNil(object["max_tokens"], "options sit beside the prompt, not nested")
    }

    func testOpenAIStopAndPromptTakeBothShapes() throws {
        struct S: Decodable { let stop: StopSequences; let prompt: PromptText }
        let one = try JSONDecoder().decode(S.self, from: Data(#"{"stop":"END","prompt":"a"}"#.utf8))
        XCTAssertEqual(one.stop.values, ["END"])
        let many = try JSONDecoder().decode(S.self, from: Data(#"{"stop":["a","b"],"prompt":["x"]}"#.utf8))
        XCTAssertEqual(many.stop.values, ["a", "b"])
        XCTAssertEqual(many.prompt.text, "x")
        XCTAssertThrowsError(try JSONDecoder().decode(S.self, from: Data(#"{"stop":"a","prompt":["x","y"]}"#.utf8)))
    }

    func testErrorBodyShapeAndStatuses() throws {
        let body = ErrorBody(code: .overloaded, message: "busy")
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(body)) as! [String: [String: String]]
        XCTAssertEqual(object["error"], ["code": "overloaded", "message": "busy", "type": "rate_limit_error"])
        XCTAssertEqual(ErrorCode.overloaded.httpStatus, 429)
        XCTAssertEqual(ErrorCode.forbidden.httpStatus, 403)
        XCTAssertEqual(ErrorCode.loading.httpStatus, 503)
        for code in ErrorCode.allCases { XCTAssertTrue((400...599).contains(code.httpStatus)) }
    }

    func testSocketResolution() {
        XCTAssertEqual(SocketClient.resolvePath("/x.sock"), "/x.sock")
        setenv(ControlSocket.environmentVariable, "/env.sock", 1)
        defer { unsetenv(ControlSocket.environmentVariable) }
        XCTAssertEqual(SocketClient.resolvePath(nil), "/env.sock")
    }
}
