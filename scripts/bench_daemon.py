#!/usr/bin/env python3
"""Daemon figures for `make bench`: start to READY, idle RSS, API overhead on a 64-token answer,
time to first token through the socket against the engine's own prefill time, and time to
knowledge: from ingesting a text file of about 1,000 tokens to its passages being searchable and to
its token memory being in use, and from ingesting a directory of 100 documents (a drive) to every one
of them answering (all passages searchable, and a question about the last one citing it) while the
memory learns behind. Medians over --runs runs (the drive: up to 3 runs, each after the memory caught up).
Usage: bench_daemon.py --daemon BIN --model FILE [--runs N]"""
import argparse, json, os, socket, statistics, tempfile, time

import daemon_process

def request(sock_path, body, stream=False, path="/v1/generate"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    data = json.dumps(body).encode()
    s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return s

def get(sock_path, path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = b""
    while chunk := s.recv(65536):
        raw += chunk
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])

def time_to_knowledge(sock_path, directory, runs):
    """Seconds from POST /v1/ingest of a new ~1,000-token text file to (passages searchable,
    token memory in use), per run. The text: the start of the Apache licence, made unique per run."""
    text = open("/usr/share/common-licenses/Apache-2.0", encoding="utf-8").read()[:4200]
    passages, memory = [], []
    for r in range(runs):
        before = get(sock_path, "/v1/status")["learning"]
        path = os.path.join(directory, f"document-{r}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"Copy {r} of the licence text.\n{text}")
        t = time.perf_counter()
        s = request(sock_path, {"path": path}, path="/v1/ingest")
        while s.recv(65536):
            pass
        learned_at = memory_at = None
        while memory_at is None and time.perf_counter() - t < 120:
            now = get(sock_path, "/v1/status")["learning"]
            if learned_at is None and now["documents_learned"] > before["documents_learned"]:
                learned_at = time.perf_counter() - t
            if now.get("memory_documents", 0) > before.get("memory_documents", 0):
                memory_at = time.perf_counter() - t
            time.sleep(0.02)
        passages.append(learned_at if learned_at is not None else float("nan"))
        memory.append(memory_at if memory_at is not None else float("nan"))
    return passages, memory

def chat(sock_path, question):
    s = request(sock_path, {"messages": [{"role": "user", "content": question}], "max_tokens": 1, "temperature": 0}, path="/v1/chat")
    raw = b""
    while chunk := s.recv(65536):
        raw += chunk
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])

def drive_answerable(sock_path, directory, run):
    """Seconds from POST /v1/ingest of 100 new documents (about 700 tokens each) to all of them
    learned as passages, and to a question about the last one citing it."""
    text = open("/usr/share/common-licenses/Apache-2.0", encoding="utf-8").read()[:3000]
    drive = os.path.join(directory, f"drive-{run}")
    os.mkdir(drive)
    for n in range(1, 101):
        with open(os.path.join(drive, f"doc-{n:03d}.txt"), "w", encoding="utf-8") as f:
            f.write(f"Document {n} of drive {run}: its reference number is R{run}x{n * 7919}.\n\n{text}")
    before = get(sock_path, "/v1/status")["learning"]
    t = time.perf_counter()
    s = request(sock_path, {"path": drive}, path="/v1/ingest")
    while s.recv(65536):
        pass
    learned_at = answered_at = None
    while answered_at is None and time.perf_counter() - t < 300:
        now = get(sock_path, "/v1/status")["learning"]
        if learned_at is None and now["documents_learned"] >= before["documents_learned"] + 100:
            learned_at = time.perf_counter() - t
        if learned_at is not None:
            sources = chat(sock_path, f"What is the reference number of document 100 of drive {run}?").get("sources") or []
            if sources and sources[0]["path"] == "doc-100.txt":
                answered_at = time.perf_counter() - t
        time.sleep(0.05)
    memory_behind = get(sock_path, "/v1/status")["learning"].get("memory_documents", 0) - before.get("memory_documents", 0)
    # Let the memory catch up before the next run, so runs do not slow each other.
    while get(sock_path, "/v1/status")["learning"].get("memory_documents", 0) < before.get("memory_documents", 0) + 100 \
            and time.perf_counter() - t < 900:
        time.sleep(1)
    return (learned_at or float("nan")), (answered_at or float("nan")), memory_behind

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    t0 = time.perf_counter()
    p, sock_path = daemon_process.start(a.daemon, a.model, tmp)
    try:
        ready_s = time.perf_counter() - t0
        time.sleep(1)
        rss = next(int(l.split()[1]) for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS:")) / 1024
        body = {"prompt": "The history of the printing press", "max_tokens": 64, "temperature": 0}
        overheads, ttft_extra = [], []
        for _ in range(a.runs + 1):
            t = time.perf_counter()
            s = request(sock_path, body)
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
            wall = time.perf_counter() - t
            usage = json.loads(raw.split(b"\r\n\r\n", 1)[1])["usage"]
            engine = usage["prefill_s"] + usage["generate_s"]
            overheads.append((wall - engine) / wall)
            t = time.perf_counter()
            s = request(sock_path, dict(body, stream=True))
            raw, first = b"", None
            while chunk := s.recv(65536):
                if first is None and b'{"text"' in chunk:
                    first = time.perf_counter() - t
                raw += chunk
            final = [l for l in raw.split(b"\n") if b'"done"' in l][-1]
            usage = json.loads(final)["result"]["usage"]
            # The first piece follows the prompt's evaluation and the first sampled token.
            ttft_extra.append(first - usage["prefill_s"])
        overheads, ttft_extra = overheads[1:], ttft_extra[1:]
        documents = os.path.join(tmp, "documents")
        os.mkdir(documents)
        passages_s, memory_s = time_to_knowledge(sock_path, documents, a.runs)
        drive = [drive_answerable(sock_path, documents, r) for r in range(min(3, a.runs))]
        print(json.dumps({"ready_s": round(ready_s, 3), "idle_rss_mib": round(rss, 1),
                          "api_overhead_64_tokens": round(statistics.median(overheads), 4),
                          "ttft_minus_prefill_ms": round(1000 * statistics.median(ttft_extra), 2),
                          "knowledge_1000_tokens_passages_s": round(statistics.median(passages_s), 2),
                          "knowledge_1000_tokens_memory_s": round(statistics.median(memory_s), 2),
                          "drive_100_documents_learned_s": round(statistics.median(d[0] for d in drive), 2),
                          "drive_100_documents_answered_s": round(statistics.median(d[1] for d in drive), 2),
                          "drive_100_documents_memorised_by_then": [d[2] for d in drive], "runs": a.runs}))
    finally:
        p.terminate()
        p.wait()

if __name__ == "__main__":
    main()
