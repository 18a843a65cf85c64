"""Feedback and adapters out to other tools: training sets for TRL and mlx-lm, adapters for llama.cpp.

Training sets (JSONL, one example a line, in the conversational shapes TRL and mlx-lm read unchanged):
- dpo: {"prompt": [messages], "chosen": [assistant], "rejected": [assistant]}: an answer and its
  correction, or the revision the UNO loop distilled from the feedback (its "pair" artifact);
- sft: {"messages": [..., assistant]}: answers rated up, corrections, distilled revisions;
- kto: {"prompt": [messages], "completion": [assistant], "label": bool}: rated answers (up = true),
  an answer with a correction (false) and the correction (true).
Adapters: the deployed GGUF, an Ollama Modelfile (FROM base, ADAPTER file) and a README with the
llama-server command.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from uno_local.errors import NothingToLearnError
from uno_local.store import Log, Store

KINDS = ("dpo", "sft", "kto")


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def training_rows(logs: list[Log], revisions: dict[int, str], kind: str) -> list[dict]:
    """Examples of `kind` from answered turns with feedback; `revisions` maps message id -> distilled better answer."""
    rows: list[dict] = []
    for log in logs:
        fb, prompt, answer = log.feedback, log.messages[:-1], log.answer
        better = (
            fb.correction if fb and fb.correction and fb.correction.strip() != answer.strip() else None
        ) or (revisions.get(log.message_id))
        rating = fb.rating if fb else None
        if kind == "dpo" and better:
            rows.append({"prompt": prompt, "chosen": _assistant(better), "rejected": _assistant(answer)})
        elif kind == "sft":
            if rating == 1:
                rows.append({"messages": log.messages})
            if better:
                rows.append({"messages": [*prompt, *_assistant(better)]})
        elif kind == "kto":
            if rating is not None or better:
                label = rating == 1 if rating is not None else False
                rows.append({"prompt": prompt, "completion": _assistant(answer), "label": label})
            if better:
                rows.append({"prompt": prompt, "completion": _assistant(better), "label": True})
    return rows


def distilled_revisions(store: Store) -> dict[int, str]:
    """message id -> the revision the last retrain's pair stage preferred over that answer."""
    from uno_local.store.learning import artifacts

    out = {}
    for key, pair in artifacts(store, "pair").items():
        if pair and pair.get("kind") == "revision" and key.isdigit():
            out[int(key)] = pair["chosen"]
    return out


def export_training_set(store: Store, kind: str, path: Path) -> int:
    """Write `kind` examples to `path` atomically; NothingToLearnError when there are none."""
    logs = list(store.logs(with_feedback_only=True))
    revisions = distilled_revisions(store)
    # a stale revision (the answer changed since) is not used: it must reject this exact answer
    pairs = {log.message_id: revisions[log.message_id] for log in logs if log.message_id in revisions}
    rows = training_rows(logs, pairs, kind)
    if not rows:
        raise NothingToLearnError(
            f"No feedback gives {kind} examples yet: rate or correct some answers first; nothing was written."
        )
    write_jsonl(path, rows)
    return len(rows)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=".uno-export-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_adapter(record, base_model: Path, out_dir: Path) -> list[Path]:
    """Copy an adapter's GGUF into `out_dir` with a Modelfile and a README; returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    adapter = out_dir / f"{record.name}-v{record.version}.gguf"
    shutil.copy2(record.gguf, adapter)
    modelfile = out_dir / "Modelfile"
    modelfile.write_text(f"FROM {base_model}\nADAPTER ./{adapter.name}\n")
    readme = out_dir / "README.md"
    readme.write_text(
        f"# {record.name} v{record.version} ({record.kind} adapter from uno-local)\n\n"
        f"A llama.cpp LoRA adapter for `{base_model.name}`.\n\n"
        f"- llama-server: `llama-server -m {base_model} --lora {adapter.name}`\n"
        f"- Ollama: `ollama create {record.name} -f Modelfile`\n"
        f"- llama-cpp-python: `Llama(model_path={str(base_model)!r}, lora_path={adapter.name!r})`\n"
    )
    return [adapter, modelfile, readme]
