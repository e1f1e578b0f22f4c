"""llama.cpp side of `cargo xtask bench`: a long-lived worker driven over stdin/stdout.

Started by xtask/src/bench.rs as `python llama_worker.py CONFIG.json THREADS`. It loads the base
model with the exported GGUF LoRA (scale 1.0), then answers one JSON line per command line; the
paw-rt worker (xtask `bench --worker`) speaks the same protocol, so the parent can alternate
engines measurement by measurement.

Decoding is greedy (argmax of the logits) through llama-cpp-python's low-level `eval`, mirroring
paw-rt: fixed prefix tokenized with special tokens, the input as plain text (special=False),
stop on any end-of-generation token or max_tokens. The prompt prefix is evaluated once per
template; a call rewinds `n_tokens` to the prefix length, so llama.cpp keeps the prefix's KV
cache and evaluates only input + suffix + generated tokens (the same state reuse
`Llama.__call__` does through its longest-prefix match, without its sampling overhead).
"""

import json
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

PLACEHOLDER = "{INPUT_PLACEHOLDER}"


def vm_hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Engine:
    def __init__(self, cfg, threads):
        t0 = time.perf_counter()
        self.llm = Llama(
            model_path=cfg["model"],
            lora_path=cfg["adapter_gguf"],
            lora_scale=1.0,
            n_ctx=cfg["context_window"],
            n_batch=512,
            n_ubatch=512,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,
            verbose=False,
        )
        self.load_secs = time.perf_counter() - t0
        self.n_vocab = self.llm.n_vocab()
        self.templates = {}
        for name, template in cfg["templates"].items():
            prefix, suffix = template.split(PLACEHOLDER)
            self.templates[name] = (self.tok(prefix, True), self.tok(suffix, True))
        self.loaded_prefix = None

    def tok(self, text, special):
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def is_eog(self, token):
        return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token))

    def logits(self):
        # Logits of the last evaluated token (logits_all=False keeps no `scores` copy).
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.n_vocab,))

    def prime(self, name):
        """KV cache holds exactly the template's prefix (evaluated once, then reused)."""
        prefix, _ = self.templates[name]
        if self.loaded_prefix != name:
            self.llm.reset()
            self.llm.eval(prefix)
            self.loaded_prefix = name
        # Rewind to the end of the prefix; eval() drops the KV cells after n_tokens.
        self.llm.n_tokens = len(prefix)

    def generate(self, name, text, max_tokens):
        """Greedy call with the prefix cached. Returns (ids, prefill secs, decode secs)."""
        _, suffix = self.templates[name]
        t0 = time.perf_counter()
        self.prime(name)  # a rewind only: callers prime the template before timing
        self.llm.eval(self.tok(text, False) + suffix)
        t1 = time.perf_counter()
        ids = []
        while True:
            nxt = int(np.argmax(self.logits()))
            ids.append(nxt)
            if self.is_eog(nxt) or len(ids) >= max_tokens:
                break
            self.llm.eval([nxt])
        t2 = time.perf_counter()
        return ids, t1 - t0, t2 - t1

    def text(self, ids):
        return self.llm.detokenize([i for i in ids if not self.is_eog(i)]).decode("utf-8", "replace")

    def handle(self, cmd):
        task = cmd["task"]
        if task == "prefill":
            # The whole prompt, nothing cached: prefill throughput.
            prefix, suffix = self.templates[cmd["template"]]
            ids = prefix + self.tok(cmd["input"], False) + suffix
            self.llm.reset()
            self.loaded_prefix = None
            t0 = time.perf_counter()
            self.llm.eval(ids)
            np.argmax(self.logits())
            return {"tokens": len(ids), "secs": time.perf_counter() - t0}
        if task in ("decode", "warm", "batch"):
            # paw-rt keeps every bound program's prefix cached; here one prefix fits in the
            # KV cache at a time, so (re)build it outside the timed part, as paw-rt's bind() is.
            self.prime(cmd["template"])
        if task == "decode":
            ids, _, dec = self.generate(cmd["template"], cmd["input"], cmd["max_tokens"])
            # The first token comes from the prefill logits: len(ids) - 1 decode steps.
            return {"tokens": len(ids) - 1, "secs": dec, "generated": len(ids), "text": self.text(ids)}
        if task == "warm":
            secs, texts = [], []
            for text in cmd["inputs"]:
                t0 = time.perf_counter()
                ids, _, _ = self.generate(cmd["template"], text, cmd["max_tokens"])
                secs.append(time.perf_counter() - t0)
                texts.append(self.text(ids))
            return {"secs": secs, "texts": texts}
        if task == "batch":
            # llama-cpp-python has no batching API: one input after another, prefix reused.
            t0 = time.perf_counter()
            texts, tokens = [], 0
            for text in cmd["inputs"]:
                ids, _, _ = self.generate(cmd["template"], text, cmd["max_tokens"])
                texts.append(self.text(ids))
                tokens += len(ids)
            return {"secs": time.perf_counter() - t0, "texts": texts, "generated": tokens}
        if task == "logits":
            prefix, suffix = self.templates[cmd["template"]]
            self.llm.reset()
            self.loaded_prefix = None
            self.llm.eval(prefix + self.tok(cmd["input"], False) + suffix)
            return {"logits": [float(x) for x in self.logits()]}
        if task == "rss":
            return {"vm_hwm_kib": vm_hwm_kib()}
        raise ValueError(f"unknown task {task!r}")


def main():
    cfg = json.load(open(sys.argv[1]))
    threads = int(sys.argv[2])
    engine = Engine(cfg, threads)
    print(json.dumps({"ready": True, "load_secs": engine.load_secs, "version": llama_cpp.__version__}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        print(json.dumps(engine.handle(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
