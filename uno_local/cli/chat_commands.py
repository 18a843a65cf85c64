"""`uno ask`: one answer streamed to stdout, or a reproducible batch from JSONL; both are logged."""

from __future__ import annotations

import json
from pathlib import Path

import click

from uno_local.app import App
from uno_local.atomic import atomic_write
from uno_local.cli import cli
from uno_local.errors import ImportFormatError
from uno_local.logs import MAX_LINE_BYTES, dump_line


@cli.command()
@click.argument("query", required=False)
@click.option(
    "--batch", "batch", type=click.Path(path_type=Path), help="JSONL of {id, query} or {id, messages}."
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    help="Where --batch writes {id, response, route, tokens}.",
)
@click.option(
    "--greedy/--sample",
    default=None,
    help="Greedy decoding (default for --batch) or sampling (default for one query).",
)
@click.option("--temperature", type=float, help="Sampling temperature.")
@click.option("--max-tokens", type=int, help="Longest answer in tokens.")
@click.option("--seed", type=int, help="Sampling seed.")
@click.option("--conversation", "conversation_id", type=int, help="Continue this conversation id.")
@click.option(
    "--mode", type=click.Choice(["uno", "uno-single"]), help="Routing mode for this call (default: uno.mode)."
)
@click.pass_obj
def ask(
    app: App,
    query: str | None,
    batch: Path | None,
    out: Path | None,
    greedy: bool | None,
    temperature: float | None,
    max_tokens: int | None,
    seed: int | None,
    conversation_id: int | None,
    mode: str | None,
) -> None:
    """Answer QUERY (streamed to stdout), or every line of --batch into --out.

    Each answer is logged as a conversation, so feedback and retraining can use it.
    """
    if mode:
        app.chat.responder.mode = mode
    if batch is None:
        if not query:
            raise click.UsageError(
                'Give a query, e.g. uno ask "What is a prime number?", or --batch FILE --out FILE.'
            )
        settings = app.settings(
            greedy=bool(greedy), temperature=temperature, max_tokens=max_tokens, seed=seed
        )
        # The question is stored (with its conversation, in one transaction) before the model loads.
        if conversation_id is None:
            conversation_id, user_id = app.store.start_conversation(_title(query), query, source="ask")
        else:
            user_id = app.store.add_message(conversation_id, "user", query, source="ask")
        turn = app.chat.reply(conversation_id, user_id, settings, source="ask")
        for delta in turn:
            click.echo(delta, nl=False)
        click.echo()
        _warn(app)
        return
    if out is None:
        raise click.UsageError("--batch needs --out FILE for the answers.")
    settings = app.settings(
        greedy=greedy is not False, temperature=temperature, max_tokens=max_tokens, seed=seed
    )
    items = read_batch(batch)
    with click.progressbar(length=len(items), label="Answering", file=click.get_text_stream("stderr")) as bar:
        results = answer_batch(app, items, settings, on_answer=lambda: bar.update(1))
    _write_jsonl(out, results)
    _warn(app)
    click.echo(f"Wrote {len(results)} answers to {out}.", err=True)


def answer_batch(app: App, items: list[tuple[object, list[dict]]], settings, on_answer) -> list[dict]:
    """Log and route every item, then answer them together (`UnoResponder.answer_many`: base and Expert
    answers in one batched call, grouped by adapter; each step of the Reflective ones in a batch of its
    own). Each answer is stored as it finishes; a failed one is stored incomplete and its line carries
    the error."""
    from uno_local.chat import history_for_model, start_planned_answer

    store, responder = app.store, app.chat.responder
    turns = []
    for item_id, messages in items:
        conversation = store.new_conversation(_title(messages[-1]["content"]))
        for message in messages[:-1]:
            store.add_message(conversation, message["role"], message["content"], source="context")
        store.add_message(conversation, "user", messages[-1]["content"], source="ask")
        context = history_for_model(store, conversation)
        plan = responder.plan(context)
        answer_id = start_planned_answer(store, conversation, app.runtime.model_name, settings, plan, "ask")
        turns.append((item_id, answer_id, plan, context))
    rows: list[dict] = [{}] * len(turns)

    def done(i: int, text: str, prompt: int | None, completion: int | None, error: str | None = None) -> None:
        item_id, answer_id, plan, _ = turns[i]
        store.finish_answer(
            answer_id, text, complete=error is None, prompt_tokens=prompt, completion_tokens=completion
        )
        rows[i] = {
            "id": item_id,
            "response": text,
            "route": plan.route,
            "tokens": {"prompt": prompt, "completion": completion},
            **({"error": error} if error else {}),
        }
        on_answer()

    responder.answer_many(
        [context for *_, context in turns],
        settings,
        plans=[plan for _, _, plan, _ in turns],
        n_parallel=app.config.model.n_parallel,
        on_answer=lambda i, a: done(i, a.text, a.prompt_tokens, a.completion_tokens, a.error),
    )
    for row in rows:
        if "error" in row:
            click.echo(f"Warning: {row['id']}: {row['error']}", err=True)
    return rows


def _warn(app: App) -> None:
    """Adapters the router had to skip (say, a corrupt file): the base model answered instead."""
    for warning in getattr(app.chat.responder, "warnings", []):
        click.echo(f"Warning: {warning}", err=True)


def _title(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "New chat"
    return line[:60]


def read_batch(path: Path) -> list[tuple[object, list[dict]]]:
    """Parse a batch file: every line {id, query} or {id, messages}; all or nothing."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFormatError(f"Cannot read {path} ({exc.strerror}); check the path.") from exc
    items = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{path}, line {number}"
        if len(raw) > MAX_LINE_BYTES:
            raise ImportFormatError(
                f"{where} is longer than {MAX_LINE_BYTES // 1_000_000} MB; nothing was answered."
            )
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ImportFormatError(
                f"{where} is not valid UTF-8 JSON ({exc}); nothing was answered."
            ) from exc
        if not isinstance(obj, dict) or "id" not in obj:
            raise ImportFormatError(f'{where} needs an object with "id" and "query" or "messages".')
        if isinstance(obj.get("query"), str) and obj["query"].strip():
            messages = [{"role": "user", "content": obj["query"]}]
        elif isinstance(obj.get("messages"), list) and obj["messages"]:
            messages = obj["messages"]
            ok = all(
                isinstance(m, dict)
                and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str)
                for m in messages
            )
            if not ok or messages[-1]["role"] != "user":
                raise ImportFormatError(
                    f'{where}: "messages" must be role/content objects ending with a user turn.'
                )
        else:
            raise ImportFormatError(f'{where} needs a non-empty "query" string or a "messages" list.')
        items.append((obj["id"], messages))
    if not items:
        raise ImportFormatError(f"{path} holds no queries; nothing was answered.")
    return items


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(dump_line(row) + "\n")
