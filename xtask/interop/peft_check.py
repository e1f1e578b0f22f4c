"""`cargo xtask interop`'s Python half: a `paw export --format peft` directory run by Hugging
Face `transformers` + `peft` on the CPU, against paw-rt's numbers for the same token ids.

transformers loads the GGUF interpreter itself (`gguf_file=`, dequantized to f32; q/k rows of a
llama GGUF put back in Hugging Face order by its loader), `PeftModel` applies the exported
adapter, and for each case of each `--case NAME PEFT_DIR REF_DIR`:

- greedy decoding from paw's prompt token ids, with the adapter and without it
  (`disable_adapter()`), against paw-rt's greedy token ids (REF_DIR/reference.json);
- next-token logits at the prompt's last position with and without the adapter: the adapter's
  logit change (delta) against paw-rt's (REF_DIR/logits.f32);
- a control: the same delta with the exported q/k `lora_B` rows put in GGUF llama order (what
  an export without the row fix would give), to show the check can tell;
- whether the Hugging Face tokenizer (read from the GGUF) gives paw's prompt ids for the
  rendered prompt text (prompt_template.txt with the input in place of the placeholder), as a
  server fed the rendered text would.

Writes one JSON object (--out); the xtask turns it into the table and the verdict. Offline:
no hub access is needed or attempted.
"""

import argparse
import json
import os
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")
# Deprecation notices of transformers' own internals (and of `past_key_values`, which the
# greedy loop still passes) are noise in the xtask's log.
warnings.filterwarnings("ignore", category=FutureWarning)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

PLACEHOLDER = "{INPUT_PLACEHOLDER}"


def greedy(model, prompt_ids, max_tokens, eog):
    """Greedy token ids after `prompt_ids`, stopping after an end-of-generation token."""
    out = []
    past = None
    x = torch.tensor([prompt_ids])
    with torch.no_grad():
        for _ in range(max_tokens):
            r = model(input_ids=x, past_key_values=past, use_cache=True)
            past = r.past_key_values
            t = int(r.logits[0, -1].argmax())
            out.append(t)
            if t in eog:
                break
            x = torch.tensor([[t]])
    return out


def last_logits(model, prompt_ids):
    with torch.no_grad():
        r = model(input_ids=torch.tensor([prompt_ids]), use_cache=False)
    return r.logits[0, -1].double().numpy()


def divergence(model, ids, paw, hf):
    """Where transformers' greedy ids `hf` first leave paw-rt's `paw`, and transformers' logit
    margin there of its own token over paw-rt's (small: a near tie, which the quantization gap
    can flip). None when they are equal."""
    if paw == hf:
        return None
    k = next((i for i, (a, b) in enumerate(zip(paw, hf)) if a != b), None)
    if k is None:
        return {"position": min(len(paw), len(hf)), "margin": None}
    logits = last_logits(model, ids + paw[:k])
    return {"position": k, "margin": float(logits[hf[k]] - logits[paw[k]])}


def gguf_row_perm(heads, head_dim):
    """Index list: row g of the GGUF llama layout holds Hugging Face row perm[g]."""
    half = head_dim // 2
    perm = []
    for h in range(heads):
        for i in range(half):
            for s in range(2):
                perm.append(h * head_dim + s * half + i)
    return torch.tensor(perm)


def qk_lora_b(model, adapter):
    """(module name, lora_B weight, heads) of every q/k projection with `adapter`."""
    cfg = model.base_model.model.config
    heads = {"q_proj": cfg.num_attention_heads, "k_proj": cfg.num_key_value_heads}
    found = []
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in heads and hasattr(module, "lora_B") and adapter in module.lora_B:
            found.append((name, module.lora_B[adapter].weight, heads[leaf]))
    return found


def loaded_as_written(model, adapter, peft_dir):
    """(tensors in the file, tensors PEFT holds with exactly the file's values)."""
    from safetensors.numpy import load_file

    params = dict(model.named_parameters())
    written = load_file(os.path.join(peft_dir, "adapter_model.safetensors"))
    same = 0
    for key, value in written.items():
        stem, leaf = key.rsplit(".", 1)
        p = params.get(f"{stem}.{adapter}.{leaf}")
        if p is not None and p.shape == value.shape and np.array_equal(p.detach().numpy(), value):
            same += 1
    return len(written), same


def lora_layers(model, adapter):
    return [
        m
        for _, m in model.named_modules()
        if isinstance(getattr(m, "scaling", None), dict) and adapter in m.scaling
    ]


def rms(v):
    return float(np.sqrt((v * v).mean()))


def slope(y, x):
    """Least-squares factor s of y ~ s x (1 when the deltas agree in scale)."""
    d = float((x * x).sum())
    return float((x * y).sum() / d) if d > 0 else float("nan")


def corr(a, b):
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / d) if d > 0 else float("nan")


def top(v, k):
    return [int(i) for i in np.argsort(-v)[:k]]


def check_cases(model, adapter, tok, template, ref, logits, head_dim):
    eog = set(ref["eog_ids"])
    max_tokens = ref["max_tokens"]
    vocab = ref["vocab"]
    results = []
    for i, case in enumerate(ref["cases"]):
        ids = case["prompt_ids"]
        rendered = template.replace(PLACEHOLDER, case["input"])
        hf_ids = tok(rendered).input_ids
        paw_adapter = logits[2 * i].astype(np.float64)
        paw_base = logits[2 * i + 1].astype(np.float64)

        with_adapter = greedy(model, ids, max_tokens, eog)
        adapter_divergence = divergence(model, ids, case["adapter"]["ids"], with_adapter)
        la = last_logits(model, ids)
        with model.disable_adapter():
            without = greedy(model, ids, max_tokens, eog)
            base_divergence = divergence(model, ids, case["base"]["ids"], without)
            lb = last_logits(model, ids)
        n = min(vocab, la.shape[0])
        la, lb = la[:n], lb[:n]
        pa, pb = paw_adapter[:n], paw_base[:n]
        dh, dp = la - lb, pa - pb

        # Control: q/k lora_B rows in GGUF llama order (the export without its row fix).
        saved = []
        with torch.no_grad():
            for _, w, heads in qk_lora_b(model, adapter):
                saved.append((w, w.detach().clone()))
                w.copy_(w[gguf_row_perm(heads, head_dim)])
        lc = last_logits(model, ids)[:n]
        with torch.no_grad():
            for w, orig in saved:
                w.copy_(orig)
        dc = lc - lb

        # Control: PEFT's scaling doubled (an export whose lora_alpha is off by 2x).
        layers = lora_layers(model, adapter)
        for m in layers:
            m.scaling[adapter] *= 2.0
        ls = last_logits(model, ids)[:n]
        for m in layers:
            m.scaling[adapter] /= 2.0
        ds = ls - lb

        # Serving by text: transformers' own tokenization of the rendered prompt.
        rendered_output = (
            with_adapter if hf_ids == ids else greedy(model, hf_ids, max_tokens, eog)
        )

        results.append(
            {
                "input": case["input"],
                "prompt_tokens": len(ids),
                "rendered_tokenization_equal": hf_ids == ids,
                "rendered_prompt_tokens": len(hf_ids),
                "rendered_adapter_text": tok.decode(rendered_output, skip_special_tokens=True),
                "rendered_adapter_text_equal": tok.decode(rendered_output, skip_special_tokens=True)
                == case["adapter"]["text"],
                "paw_adapter_ids": case["adapter"]["ids"],
                "paw_adapter_text": case["adapter"]["text"],
                "hf_adapter_ids": with_adapter,
                "hf_adapter_text": tok.decode(with_adapter, skip_special_tokens=True),
                "adapter_output_equal": with_adapter == case["adapter"]["ids"],
                "adapter_divergence": adapter_divergence,
                "paw_base_ids": case["base"]["ids"],
                "paw_base_text": case["base"]["text"],
                "hf_base_ids": without,
                "hf_base_text": tok.decode(without, skip_special_tokens=True),
                "base_output_equal": without == case["base"]["ids"],
                "base_divergence": base_divergence,
                "delta_corr": corr(dh, dp),
                "delta_max_abs_diff": float(np.abs(dh - dp).max()),
                "delta_max_abs_paw": float(np.abs(dp).max()),
                "delta_max_abs_hf": float(np.abs(dh).max()),
                "delta_rms_paw": rms(dp),
                "delta_rms_diff": rms(dh - dp),
                "delta_slope": slope(dh, dp),
                "base_logits_rms_diff": rms(lb - pb),
                "delta_top1_equal": top(dh, 1) == top(dp, 1),
                "delta_top10_overlap": len(set(top(dh, 10)) & set(top(dp, 10))),
                "adapter_logits_max_abs_diff": float(np.abs(la - pa).max()),
                "base_logits_max_abs_diff": float(np.abs(lb - pb).max()),
                "base_logits_corr": corr(lb, pb),
                "paw_self_logits_max_abs_diff": case["rebuilt_ids_max_logit_diff"],
                "control_delta_corr": corr(dc, dp),
                "control_delta_max_abs_diff": float(np.abs(dc - dp).max()),
                "control_top1_equal": top(lc, 1) == top(pa, 1),
                "control_delta_rms_diff": rms(dc - dp),
                "control_delta_slope": slope(dc, dp),
                "scale_control_delta_corr": corr(ds, dp),
                "scale_control_delta_max_abs_diff": float(np.abs(ds - dp).max()),
                "scale_control_delta_rms_diff": rms(ds - dp),
                "scale_control_delta_slope": slope(ds, dp),
            }
        )
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="the interpreter's GGUF file")
    ap.add_argument(
        "--case",
        nargs=3,
        action="append",
        metavar=("NAME", "PEFT_DIR", "REF_DIR"),
        required=True,
    )
    ap.add_argument("--out", required=True)
    # One thread: two oversubscribe a busy 2-core machine (measured 20x slower there).
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t0 = time.time()
    gguf_dir, gguf_file = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    base = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_file, dtype=torch.float32
    )
    base.eval()
    cfg = base.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    load_seconds = time.time() - t0

    out = {
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "model": {
            "gguf": args.gguf,
            "class": type(base).__name__,
            "layers": cfg.num_hidden_layers,
            "heads": cfg.num_attention_heads,
            "kv_heads": cfg.num_key_value_heads,
            "head_dim": head_dim,
            "load_seconds": round(load_seconds, 1),
        },
        "variants": [],
    }
    model = None
    for name, peft_dir, ref_dir in args.case:
        with open(os.path.join(ref_dir, "reference.json"), encoding="utf-8") as f:
            ref = json.load(f)
        logits = np.fromfile(os.path.join(ref_dir, "logits.f32"), dtype="<f4")
        logits = logits.reshape(2 * len(ref["cases"]), ref["vocab"])
        with open(os.path.join(peft_dir, "prompt_template.txt"), encoding="utf-8") as f:
            template = f.read()
        with open(os.path.join(peft_dir, "adapter_config.json"), encoding="utf-8") as f:
            config = json.load(f)
        t = time.time()
        adapter = f"v{len(out['variants'])}"
        if model is None:
            model = PeftModel.from_pretrained(base, peft_dir, adapter_name=adapter)
        else:
            model.load_adapter(peft_dir, adapter_name=adapter)
            model.set_adapter(adapter)
        model.eval()
        lora_modules = sum(
            1 for _, m in model.named_modules() if hasattr(m, "lora_A") and adapter in m.lora_A
        )
        file_tensors, loaded_same = loaded_as_written(model, adapter, peft_dir)
        cases = check_cases(model, adapter, tok, template, ref, logits, head_dim)
        out["variants"].append(
            {
                "name": name,
                "peft_dir": peft_dir,
                "r": config["r"],
                "lora_alpha": config["lora_alpha"],
                "layers_to_transform": config["layers_to_transform"],
                "lora_modules": lora_modules,
                "file_tensors": file_tensors,
                "loaded_equal_to_file": loaded_same,
                "seconds": round(time.time() - t, 1),
                "cases": cases,
            }
        )
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
