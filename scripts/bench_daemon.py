#!/usr/bin/env python3
"""Daemon figures for `make bench`: start to READY, idle RSS, API overhead on a 64-token answer,
and time to first token through the socket against the engine's own prefill time.
Medians over --runs runs. Usage: bench_daemon.py --daemon BIN --model FILE [--runs N]"""
import argparse, json, os, socket, statistics, subprocess, tempfile, time

def request(sock_path, body, stream=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    data = json.dumps(body).encode()
    s.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return s

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    sock_path, notify_path = os.path.join(tmp, "d.sock"), os.path.join(tmp, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=notify_path)
    t0 = time.perf_counter()
    p = subprocess.Popen([a.daemon, "--socket", sock_path, "--state-dir", os.path.join(tmp, "state"), "--model", a.model,
                          "--config", "/dev/null"], env=env, stderr=subprocess.DEVNULL)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
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
        print(json.dumps({"ready_s": round(ready_s, 3), "idle_rss_mib": round(rss, 1),
                          "api_overhead_64_tokens": round(statistics.median(overheads), 4),
                          "ttft_minus_prefill_ms": round(1000 * statistics.median(ttft_extra), 2), "runs": a.runs}))
    finally:
        p.terminate()
        p.wait()

if __name__ == "__main__":
    main()
