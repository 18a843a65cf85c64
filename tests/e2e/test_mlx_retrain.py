"""`uno retrain --backend mlx` end to end on a tiny store (MLX on this Linux CPU is ~15x slower than
torch, so the store, the answers and the training are kept tiny; the habit itself is learned in
tests/e2e/test_habit.py with torch)."""

from __future__ import annotations

import json

from tests.e2e.conftest import uno
from uno_local.logs import import_records, parse_record
from uno_local.store import Store

TINY = """
[generation]
max_tokens = 24

[train]
epochs = 1
min_steps = 2
batch_size = 2
learning_rate = 0.005
lora_r = 4
lora_alpha = 8.0
max_prompt_tokens = 48
max_answer_tokens = 32

[uno]
# Learning the habit is test_habit.py's; here any trained adapter ships, so that the MLX export, the
# llama.cpp parity gate and the deploy always run, whatever two training steps learned.
win_rate = 0.0
# Practice (on by default) adds its questions' examples and their steps: 96 s -> 407 s in session 35's
# clean clone, for nothing MLX-specific (the habit and the gate practise with torch).
practice_questions = 0
"""


def test_retrain_with_mlx(uno_home):
    uno_home.mkdir(parents=True, exist_ok=True, mode=0o700)
    (uno_home / "uno.toml").write_text(TINY)
    with Store(uno_home / "uno.db") as store:
        records = [
            parse_record(
                {
                    "id": f"mlx-{i}",
                    "messages": [
                        {"role": "user", "content": f"How do I cook {dish}?"},
                        {"role": "assistant", "content": f"Boil the {dish}."},
                    ],
                    "feedback": {
                        "rating": -1,
                        "comment": None,
                        "correction": f"Boil the {dish}. Happy cooking!",
                    },
                }
            )
            for i, dish in enumerate(["rice", "pasta", "eggs", "beans", "corn", "peas"])
        ]
        import_records(store, records)
    report = json.loads(uno("retrain", "--backend", "mlx", "--json"))
    assert report["backend"] == "mlx"
    (cluster,) = report["clusters"]
    assert cluster["size"] == 6 and cluster["route"] in ("expert", "reflective"), cluster["decision"]
    assert report["deployed"], cluster["decision"]  # passed the llama.cpp parity check and deployed
    adapters = json.loads(uno("adapters", "--json"))
    assert adapters and all(a["backend"] == "mlx" for a in adapters)
    status = uno("status")
    assert "Adapters:" in status and "@v1" in status
