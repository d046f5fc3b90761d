"""One round's MPC run: verification + aggregation, run jointly by the m nodes as separate processes.

Launch (one process per node, same -P list everywhere, MPyC parses argv; add no options):

    FEDCHAIN_MPC_JOB=/path/job.json python -m fedchain_mpc.mpc_program \
        -P 127.0.0.1:11365 -P 127.0.0.1:11366 -P 127.0.0.1:11367 -I <i> [--ssl ...]

With `-M1` (or no -P) it runs as one party (t = 0): then each share row must be the secret
itself (recombine first); used by fast unit tests.

Job file (JSON, written by the node service):
    {
      "round_id": "r1",
      "party": 0,                      # this node's index i (must equal -I)
      "shares": [                      # one per hospital, same order on every node
        {"hospital_id": "h1", "path": "/.../h1.share", "n_samples": 500,
         "sha256": "<hex, optional: checked against the file>"}
      ],
      "policy": {...},                 # fedchain_mpc.policy.VerificationPolicy JSON (the round's)
      "reference_path": "/.../ref.npz",   # npz with array "delta" (float64, length dim); optional
                                          # if policy.cosine_enabled is false
      "base_model_path": "/.../base.safetensors",  # optional: then the new model is written
      "l": 32, "f": 16, "t": 1, "m": 3,
      "seed": "<public randomness agreed via the ledger, e.g. hash of all share hashes>",
      "output_path": "/.../result.json"
    }
Share files are `fedchain.sharing` share bytes (parsed strictly; header must match round_id,
hospital_id, node_index=party, l, f, t, m, and all dims must agree).

Output JSON (written atomically to output_path by every node; identical except timings/bytes):
    {
      "round_id": "r1",
      "party": 0,
      "verdicts": {"h1": {"accept": true, "reason": "ok"}, ...},
                    # reason in ok | inconsistent | norm | cosine | outlier
      "n_accepted": 2, "total_weight": 1234,
      "aggregate_path": "<output_path>.aggregate.npz",   # npz "delta" float64 (weighted average)
      "aggregate_sha256": "<hex of the delta's float64 little-endian bytes>",
      "model_path": "<output_path>.model.safetensors" | null,   # base + delta, canonical
      "model_sha256": "<hex>" | null,
      "phases": {"load": s, "local_products": s, "consistency": s, "norm": s, "cosine": s,
                 "outlier": s, "reveal": s, "aggregate": s, "total": s},
      "bytes_sent": 12345,             # MPyC payload bytes this node sent
      "peak_rss_mb": 123.4
    }
Exit code 0 on success; on a bad job/share the program exits 2 with the message on stderr
and writes {"round_id", "party", "error": "..."} to output_path.
"""
