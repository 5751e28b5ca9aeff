#!/usr/bin/env python3
"""The article's Table 1 on this machine: (a) pre/post-processing in the client, the two models in
Triton, against (b) the whole ensemble in Triton; latency p50/p99 and throughput per batch size and
concurrency, with a tritonclient (gRPC) load generator, and the ratio of (b) to (a).

Needs the example prepared and injected (the README's first command), then:

    python benchmarks/article_table1.py [--batches 1,8,64,512] [--concurrency 1,4] [--seconds 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "model_repository"
sys.path[:0] = [str(ROOT), str(REPO / "preprocess" / "1")]

import tritonclient.grpc as grpcclient  # noqa: E402
from features import features  # noqa: E402

from envtool.catalog import normalize_release  # noqa: E402
from envtool.servers.embedded import EmbeddedServer  # noqa: E402

SAMPLES = json.loads((REPO / "inputs.json").read_text())["ensemble_all"]["excerpt"]


class ClientSide:
    """(a): tokenization, features and the blend in the client; minilm and forest in Triton."""

    def __init__(self, client):
        from tokenizers import Tokenizer
        self.client = client
        self.tok = Tokenizer.from_file(str(REPO / "preprocess" / "1" / "tokenizer.json"))
        vocab = json.loads((REPO / "preprocess" / "1" / "vocab.json").read_text())
        self.vocab = (vocab["most"], vocab["least"], frozenset(vocab["stop"]))

    def __call__(self, texts: list[str], weight: float) -> np.ndarray:
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int32)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int32)
        feats = np.stack([features(t, *self.vocab) for t in texts])
        text = self._infer("minilm", {"INPUT__0": ids, "INPUT__1": mask}, "OUTPUT__0")
        tree = self._infer("forest", {"input__0": feats}, "output__0")
        return weight * text + (1 - weight) * tree

    def _infer(self, model: str, arrays: dict, output: str) -> np.ndarray:
        inputs = []
        for name, arr in arrays.items():
            i = grpcclient.InferInput(name, list(arr.shape), "INT32" if arr.dtype == np.int32 else "FP32")
            i.set_data_from_numpy(arr)
            inputs.append(i)
        return self.client.infer(model, inputs).as_numpy(output)


class Ensemble:
    """(b): one request to ensemble_all."""

    def __init__(self, client):
        self.client = client

    def __call__(self, texts: list[str], weight: float) -> np.ndarray:
        ex = grpcclient.InferInput("excerpt", [len(texts)], "BYTES")
        ex.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
        w = grpcclient.InferInput("BERT_WEIGHT", [1], "FP32")
        w.set_data_from_numpy(np.array([weight], dtype=np.float32))
        return self.client.infer("ensemble_all", [ex, w]).as_numpy("SCORE")


def load(make, url: str, batch: int, concurrency: int, seconds: float) -> dict:
    texts = [SAMPLES[i % len(SAMPLES)] for i in range(batch)]
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        call = make(grpcclient.InferenceServerClient(url))
        call(texts, 0.5)  # warm-up
        while time.monotonic() < stop or not latencies:
            t0 = time.perf_counter()
            call(texts, 0.5)
            with lock:
                latencies.append(time.perf_counter() - t0)
    t_start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t_start
    lat = sorted(latencies)
    return {"p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
            "excerpts_per_s": len(lat) * batch / wall, "requests": len(lat)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,8,64,512")
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--triton", default="r24.10")
    a = ap.parse_args()
    with EmbeddedServer(normalize_release(a.triton), REPO) as server:
        server.wait_live(300)
        states = server.model_states()
        if any(s["state"] != "READY" for s in states.values()):
            sys.exit(f"not all models are READY: {states}; run the README's first command first")
        same = np.allclose(ClientSide(grpcclient.InferenceServerClient(server.grpc_url))(SAMPLES, 0.5),
                           Ensemble(grpcclient.InferenceServerClient(server.grpc_url))(SAMPLES, 0.5), atol=1e-3)
        print(f"Triton {a.triton} (embedded, CPU); (a) and (b) give the same scores: {same}")
        print(f"{'batch':>6}{'conc':>6} | {'(a) p50 ms':>11}{'p99 ms':>9}{'exc/s':>9} | "
              f"{'(b) p50 ms':>11}{'p99 ms':>9}{'exc/s':>9} | {'b/a thru':>9}")
        for batch in map(int, a.batches.split(",")):
            for conc in map(int, a.concurrency.split(",")):
                ra = load(ClientSide, server.grpc_url, batch, conc, a.seconds)
                rb = load(Ensemble, server.grpc_url, batch, conc, a.seconds)
                print(f"{batch:>6}{conc:>6} | "
                      f"{ra['p50_ms']:>11.1f}{ra['p99_ms']:>9.1f}{ra['excerpts_per_s']:>9.1f} | "
                      f"{rb['p50_ms']:>11.1f}{rb['p99_ms']:>9.1f}{rb['excerpts_per_s']:>9.1f} | "
                      f"{rb['excerpts_per_s'] / ra['excerpts_per_s']:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
