"""Route stage: (the query's cluster state, mode) -> which path answers it, and the Reflective path.

`decide_route` follows UNO-reference S12: a validated low-gap cluster answers with its Expert
adapter; a high-gap cluster, or one whose Expert failed validation, takes the Reflective path
(draft with the base, critique with the cluster's Critic adapter, revise with the base) in mode
"uno" and the plain base model in "uno-single"; an unseen query, a vetoed cluster or a missing
adapter gets the base model. `reflect` runs the Reflective path over any generate callable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from uno_local.errors import ConfigError
from uno_local.quality import revision_problem

if TYPE_CHECKING:
    from uno_local.store.learning import ClusterRow

MODES = ("uno", "uno-single")
MAX_SUGGESTIONS = 5  # a longer critique mostly repeats itself and slows the revise call

Messages = list[dict[str, str]]
Generate = Callable[[Messages, str | None], str]  # (messages, adapter or None for the base) -> answer
GenerateMany = Callable[[list[Messages], str | None], list[str]]  # one adapter for the whole batch


@dataclass(frozen=True)
class ClusterState:
    """What routing needs to know about the cluster nearest to a query."""

    label: int
    high_gap: bool
    expert_adapter: str | None  # the shipped (validated) Expert version, None if none passed
    critic_adapter: str | None
    vetoed: bool = False


def cluster_state(row: ClusterRow, served: Mapping[str, str]) -> ClusterState:
    """Pure: what routing needs from a cluster row. An adapter counts only while it is served (loaded
    under the runtime key in `served`); a cluster whose Expert failed routes like a high-gap one, and a
    high-gap one whose Expert shipped (its Reflective path could not serve it) like a low-gap one."""
    return ClusterState(
        label=row.label,
        high_gap=(row.high_gap and not row.expert) or row.route == "reflective",
        expert_adapter=served.get(row.expert) if row.expert else None,
        critic_adapter=served.get(row.critic) if row.critic else None,
        vetoed=row.vetoed,
    )


@dataclass(frozen=True)
class RouteDecision:
    kind: Literal["expert", "reflective", "base"]
    adapter: str | None  # Expert adapter for "expert", Critic adapter for "reflective"
    reason: str  # one sentence for `uno explain`


def decide_route(cluster: ClusterState | None, mode: str) -> RouteDecision:
    """Pick the path for a query whose nearest cluster is `cluster` (None: the query is unseen)."""
    if mode not in MODES:
        raise ConfigError(f"Routing mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if cluster is None:
        return RouteDecision(
            "base", None, "The query is far from every learned cluster, so the base model answered."
        )
    k = cluster.label
    if cluster.vetoed:
        return RouteDecision("base", None, f"You vetoed cluster {k}, so the base model answered.")
    if not cluster.high_gap and cluster.expert_adapter:
        return RouteDecision(
            "expert", cluster.expert_adapter, f"Cluster {k} has a validated Expert adapter, which answered."
        )
    why = (
        f"cluster {k} has a high cognitive gap"
        if cluster.high_gap
        else f"cluster {k} has no Expert adapter that passed validation"
    )
    if mode == "uno-single":
        return RouteDecision(
            "base", None, f"The base model answered because {why} and the mode is uno-single."
        )
    if not cluster.critic_adapter:
        return RouteDecision(
            "base", None, f"The base model answered because {why} and it has no Critic adapter yet."
        )
    return RouteDecision(
        "reflective",
        cluster.critic_adapter,
        f"The Reflective path answered (base draft, Critic critique, base revision) because {why}.",
    )


def critic_prompt(query: str, draft: str) -> str:
    """The Critic's input (training and inference must share it): instruction, query, draft."""
    return (
        "Write numbered suggestions, one per line, that would make the initial answer better "
        "for this user.\n\n"
        f"## User Query\n\n{query.strip()}\n\n## Initial Answer\n\n{draft.strip()}"
    )


REVISE_INSTRUCTION = (
    "Revise the initial answer so that it follows every suggestion. Output only the full revised answer, "
    "without repeating the question."
)


def revise_messages(query: str, answer: str, suggestions: list[str]) -> list[dict]:
    """The one revision prompt (the reference's "v2"): initial answer, numbered suggestions, question.
    The pair stage revises under a log's rules, the Reflective path under the Critic's suggestions."""
    numbered = "\n".join(f"{i}. {text}" for i, text in enumerate(suggestions, start=1))
    content = (
        f"## Initial Answer\n\n{answer}\n\n## Suggestion\n\n{numbered}\n\n## User Question\n\n{query}\n\n"
        f"{REVISE_INSTRUCTION}"
    )
    return [{"role": "user", "content": content}]


_ITEM = re.compile(r"^\s*\d+\s*[.)]\s*(\S.*?)\s*$", re.M)


def parse_suggestions(critique: str, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """The numbered items of a critique (at most `limit`); [] means the critic said nothing usable."""
    return [m.group(1) for m in _ITEM.finditer(critique)][:limit]


def query_text(messages: Messages) -> str:
    """The text the critic sees as the query: the last user message."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return message.get("content", "")
    raise ValueError("The conversation has no user message to answer.")


@dataclass(frozen=True)
class ReflectStep:
    kind: Literal["draft", "critique", "revise", "refused", "skip"]  # refused: a revision not kept
    text: str
    adapter: str | None = None


def reflect(
    query_messages: Messages, generate: Generate, critic_adapter: str, max_rounds: int = 1
) -> tuple[str, list[ReflectStep]]:
    """Draft with the base, then up to `max_rounds` of critique (Critic adapter) and revision (base).

    A round with no numbered suggestion stops the loop and keeps the current answer, as does a revision
    that `quality.revision_problem` refuses (empty, echoing the prompt's scaffolding, implausible).
    Returns (final answer, the steps taken). One query of `reflect_many`.
    """

    def one_by_one(batch: list[Messages], adapter: str | None) -> list[str]:
        return [generate(messages, adapter) for messages in batch]

    return reflect_many([query_messages], one_by_one, critic_adapter, max_rounds)[0]


def system_of(messages: Messages) -> Messages:
    """The system messages of a conversation: they still apply to its revision."""
    return [m for m in messages if m.get("role") == "system"]


def revise_many(
    queries: list[Messages], answers: list[str], suggestions: list[list[str]], generate_many: GenerateMany
) -> list[tuple[str, str | None]]:
    """The base model's revision of each answer under its suggestions, all in one `generate_many` call:
    (the revision, None), or (the revision, why) when `quality.revision_problem` refuses it (scaffolding,
    empty, implausible: the caller keeps the answer it had), or (the answer, why) when there was no
    suggestion to follow and nothing was generated."""
    texts = [query_text(messages) for messages in queries]
    todo = [i for i, items in enumerate(suggestions) if items]
    prompts = [system_of(queries[i]) + revise_messages(texts[i], answers[i], suggestions[i]) for i in todo]
    out: list[tuple[str, str | None]] = [(answer, "there was no suggestion to follow") for answer in answers]
    for i, revised in zip(todo, generate_many(prompts, None) if todo else [], strict=True):
        problem = revision_problem(revised, texts[i], answers[i], suggestions[i])
        out[i] = (revised, problem)
    return out


def reflect_many(
    queries: list[Messages],
    generate_many: GenerateMany,
    critic_adapter: str,
    max_rounds: int = 1,
    drafts: list[str] | None = None,
) -> list[tuple[str, list[ReflectStep]]]:
    """`reflect` for many queries at once: each step (drafts, critiques, revisions) is one call of
    `generate_many` for every query still revising, so a batched runtime answers them together.
    `drafts`: the base model's answers when they are known already (they are the first step)."""
    texts = [query_text(messages) for messages in queries]
    if drafts is None:
        drafts = generate_many(queries, None)
    answers = list(drafts)
    traces = [[ReflectStep("draft", draft)] for draft in drafts]
    active = list(range(len(queries)))
    for _ in range(max(0, max_rounds)):
        if not active:
            break
        prompts = [[{"role": "user", "content": critic_prompt(texts[i], answers[i])}] for i in active]
        suggested = []
        for i, critique in zip(active, generate_many(prompts, critic_adapter), strict=True):
            items = parse_suggestions(critique)
            traces[i].append(ReflectStep("critique", critique, critic_adapter))
            if items:
                suggested.append((i, items))
            else:
                traces[i].append(
                    ReflectStep("skip", "The critic gave no numbered suggestion; the draft stands.")
                )
        revisions = revise_many(
            [queries[i] for i, _ in suggested],
            [answers[i] for i, _ in suggested],
            [items for _, items in suggested],
            generate_many,
        )
        active = []
        for (i, _), (revised, problem) in zip(suggested, revisions, strict=True):
            if problem is not None:  # scaffolding, an empty or implausible revision: never shown
                traces[i].append(ReflectStep("refused", revised))
                traces[i].append(
                    ReflectStep("skip", f"{problem[0].upper()}{problem[1:]}; the previous answer stands.")
                )
                continue
            answers[i] = revised
            traces[i].append(ReflectStep("revise", revised))
            active.append(i)
    return list(zip(answers, traces, strict=True))
