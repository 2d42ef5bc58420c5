"""Greedy match rate on a real model: each prompt alone vs 16 at once through `serve`.
Usage: serve_invariance.py BINARY MODEL_DIR PROBE_DIR NEW_TOKENS (prints the match rate and any differing pair)."""
import json, subprocess, sys, threading, urllib.request
BIN, MODEL, PROBE, N, TOK = sys.argv[1], sys.argv[2], sys.argv[3], 16, int(sys.argv[4])
prompts = [f"Question {i}: give me one tip about {t}." for i, t in enumerate(
    ["cooking", "running", "sleep", "reading", "music", "chess", "gardening", "travel",
     "coding", "painting", "saving money", "writing", "swimming", "cycling", "tea", "photography"])]
p = subprocess.Popen([BIN, "serve", "--model", MODEL, "--probe", PROBE, "--port", "0", "--threads", "1",
                      "--threshold", "1", "--pause-threshold", "1", "--max-batch", "16"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
url = p.stdout.readline().strip().removeprefix("listening on ") + "/v1/chat/completions"
def ask(q):
    body = json.dumps({"messages": [{"role": "user", "content": q}], "max_tokens": TOK, "temperature": 0}).encode()
    r = urllib.request.urlopen(urllib.request.Request(url, body, {"content-type": "application/json"}))
    return json.load(r)["choices"][0]["message"]["content"]
alone = [ask(q) for q in prompts]
together = [None] * N
def run(i): together[i] = ask(prompts[i])
ts = [threading.Thread(target=run, args=(i,)) for i in range(N)]
[t.start() for t in ts]; [t.join() for t in ts]
same = sum(a == b for a, b in zip(alone, together))
print(f"{same}/{N} responses identical alone vs 16 concurrent ({TOK} greedy tokens each)")
for a, b in zip(alone, together):
    if a != b: print("DIFF", repr(a[:80]), "|", repr(b[:80]))
p.terminate(); p.wait()
