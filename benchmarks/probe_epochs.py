"""Every epoch of a retrain's Experts on a topic's unseen questions: how the habit and the loops evolve.

    UNO_HOME=DIR uno eval --scenario benchmarks/scenarios/packing-only.json --out DIR/report --keep DIR/keep
    .venv/bin/python benchmarks/probe_epochs.py DIR/keep benchmarks/scenarios/packing-only.json packing

The kept home's newest retrain left a checkpoint per epoch under `work/expert-*/epoch-N`. Each is exported
to a GGUF LoRA adapter (next to it) and answers the topic's test questions greedily in llama.cpp (with
the home's `generation.dry_multiplier`); the line per epoch gives the passes of the topic's check and the
mean share of repeated word 3-grams (`quality.repetition_share`) and the answers collapsed under a tenth
of the base's (`judge.length_gate`, as the validator's loop check counts them), against the base model's
on the same questions. `--train` also answers the
topic's training questions. docs/eval.md (sessions 17 and 18) used the e2e settings in DIR/uno.toml:
`[generation] max_tokens = 160`, `[train] epochs = 2, max_answer_tokens = 112, max_prompt_tokens = 128`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from statistics import fmean

PARAPHRASE = "Ask this question again in different words. Reply with the new question only."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("home", type=Path, help="a kept eval home (uno eval --keep DIR)")
    parser.add_argument("scenario", type=Path)
    parser.add_argument("topic")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--train", action="store_true", help="also answer the topic's training questions")
    parser.add_argument(
        "--paraphrase",
        action="store_true",
        help="also answer the base model's paraphrases of the training questions (fresh questions near them)",
    )
    parser.add_argument(
        "--fresh",
        type=int,
        default=0,
        help="also answer N of the other topics' training questions (questions the Expert never saw)",
    )
    parser.add_argument("--expert", default="", help="only the Expert whose folder name starts with this")
    parser.add_argument("--epochs", default="", help="only these epochs, e.g. 3,6,9,12")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from backends.gguf_export import export_peft_to_gguf
    from backends.llama_runtime import LlamaRuntime
    from uno_local.config import load_config
    from uno_local.eval.checks import check
    from uno_local.eval.scenario import load_scenario
    from uno_local.judge import length_gate
    from uno_local.paths import embedded_chat_model
    from uno_local.quality import repetition_share
    from uno_local.runtime import GenerationRequest, GenerationSettings

    scenario = load_scenario(args.scenario)
    (topic,) = [t for t in scenario.topics if t.name == args.topic]
    others = [q for t in scenario.topics if t.name != args.topic for q in t.train]
    fresh = others[:: max(1, len(others) // args.fresh)][: args.fresh] if args.fresh else []
    epochs = {int(e) for e in args.epochs.split(",") if e}
    model = embedded_chat_model()
    runtime = LlamaRuntime(model, n_ctx=2048)
    dry = load_config(args.home / "uno.toml").generation.dry_multiplier  # decoded as the kept home decodes
    settings = GenerationSettings.greedy(args.max_tokens, dry)

    def answers(questions: list[str], adapter: str | None) -> list[str]:
        requests = [
            GenerationRequest([{"role": "user", "content": q}], settings, adapter=adapter) for q in questions
        ]
        return [r.text for r in runtime.generate_many(requests)]

    base_answers: dict[tuple[str, ...], list[str]] = {}

    def line(questions: list[str], adapter: str | None) -> str:
        texts = answers(questions, adapter)
        if tuple(questions) not in base_answers:  # the base's answers once per question list
            base_answers[tuple(questions)] = texts if adapter is None else answers(questions, None)
        base = base_answers[tuple(questions)]
        passed = [check(t, topic.rule.check) for t in texts]
        marks = "".join("x" if p else "." for p in passed)
        collapsed = sum(not length_gate(t, b) for t, b in zip(texts, base, strict=True))
        return (
            f"{sum(passed)}/{len(passed)} {marks} repetition {fmean(map(repetition_share, texts)):.2f} "
            f"collapsed {collapsed}"
        )

    paraphrases = []
    if args.paraphrase:
        asks = [
            GenerationRequest(
                [{"role": "user", "content": f"{PARAPHRASE}\n\n{q}"}], GenerationSettings.greedy(48, dry)
            )
            for q in topic.train
        ]
        paraphrases = [r.text.strip().split("\n")[0].strip('"') for r in runtime.generate_many(asks)]
        for q, p in zip(topic.train, paraphrases, strict=True):
            print(f"paraphrase: {q!r} -> {p!r}", flush=True)

    def row(name: str, adapter: str | None) -> None:
        cells = [f"test {line(topic.test, adapter)}"]
        if args.train:
            cells.append(f"train {line(topic.train, adapter)}")
        if paraphrases:
            cells.append(f"paraphrased {line(paraphrases, adapter)}")
        if fresh:
            cells.append(f"fresh {line(fresh, adapter)}")
        print(name, " | ".join(cells), flush=True)

    row("base", None)
    for expert in sorted((args.home / "work").glob(f"expert-{args.expert}*")):
        for ckpt in sorted(expert.glob("epoch-*"), key=lambda p: int(p.name.split("-")[1])):
            if epochs and int(ckpt.name.split("-")[1]) not in epochs:
                continue
            adapter = ckpt / "adapter.gguf"
            if not adapter.is_file():
                export_peft_to_gguf(ckpt, model, adapter)
            runtime.load_adapter("probe", adapter)
            row(f"{expert.name} {ckpt.name}", "probe")
            runtime.unload_adapter("probe")


if __name__ == "__main__":
    main()
