#!/usr/bin/env python3
"""Score excerpts with the served pipeline (ensemble_all) over HTTP and over gRPC.

    envtool serve model_repository --triton r24.10      # in another terminal
    python model_repository/client.py "The cat sat on the mat." "Notwithstanding ..." [--weight 0.5]
"""

from __future__ import annotations

import argparse

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def score(module, client, texts: list[str], weight: float) -> np.ndarray:
    excerpt = module.InferInput("excerpt", [len(texts)], "BYTES")
    excerpt.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
    w = module.InferInput("BERT_WEIGHT", [1], "FP32")
    w.set_data_from_numpy(np.array([weight], dtype=np.float32))
    return client.infer("ensemble_all", [excerpt, w]).as_numpy("SCORE").reshape(-1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("texts", nargs="+")
    ap.add_argument("--weight", type=float, default=0.5, help="BERT_WEIGHT: the text model's share")
    ap.add_argument("--http", default="127.0.0.1:8000")
    ap.add_argument("--grpc", default="127.0.0.1:8001")
    a = ap.parse_args()
    over_http = score(httpclient, httpclient.InferenceServerClient(a.http), a.texts, a.weight)
    over_grpc = score(grpcclient, grpcclient.InferenceServerClient(a.grpc), a.texts, a.weight)
    for text, h, g in zip(a.texts, over_http, over_grpc):
        print(f"{h:8.2f} (HTTP) {g:8.2f} (gRPC)  {text[:70]}")


if __name__ == "__main__":
    main()
