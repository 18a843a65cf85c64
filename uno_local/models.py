"""Where users keep GGUF chat models -> named model files, and a name or path -> one GGUF file.

Looks in Ollama's store (manifests naming a GGUF blob), LM Studio's models folder, the Hugging Face hub
cache and the folders in `[model] folders` of uno.toml. Nothing is downloaded. Listing finds files by
name only (cheap); `describe` then reads a file's GGUF header: architecture, quantization, chat template,
and whether adapters can be trained on it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from uno_local.errors import ModelError
from uno_local.training import BaseSize

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_DEFAULT_REGISTRY = "registry.ollama.ai"


@dataclass(frozen=True)
class FoundModel:
    name: str  # what --model and `model.path` accept
    path: Path
    source: str  # ollama | lmstudio | huggingface | folder


@dataclass(frozen=True)
class ModelInfo:
    found: FoundModel
    size: int  # bytes
    arch: str
    quant: str
    chat_template: bool
    trainable: bool
    why_not: str = ""  # one sentence when not trainable
    base: BaseSize | None = None  # what a retrain's memory estimate needs; None when the header lacks it


def search_places(folders: list[str] = ()) -> list[tuple[str, Path]]:
    """(source, folder) pairs searched, in order; environment variables as each tool reads them."""
    home = Path.home()
    hf_home = Path(os.environ.get("HF_HOME") or home / ".cache" / "huggingface")
    places = [
        ("ollama", Path(os.environ.get("OLLAMA_MODELS") or home / ".ollama" / "models")),
        ("lmstudio", home / ".lmstudio" / "models"),
        ("lmstudio", home / ".cache" / "lm-studio" / "models"),
        ("huggingface", Path(os.environ.get("HF_HUB_CACHE") or hf_home / "hub")),
    ]
    return places + [("folder", Path(f).expanduser()) for f in folders]


def find_models(folders: list[str] = ()) -> list[FoundModel]:
    """Every GGUF model file in the places users keep them (unreadable places are skipped)."""
    found: list[FoundModel] = []
    finders = {"ollama": _ollama, "lmstudio": _gguf_tree, "huggingface": _hf_cache, "folder": _gguf_tree}
    for source, place in search_places(folders):
        if place.is_dir():
            found += [FoundModel(name, path, source) for name, path in finders[source](place)]
    return found


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == b"GGUF"
    except OSError:
        return False


def _ollama(root: Path):
    """Ollama: manifests/<registry>/<namespace>/<model>/<tag> JSON naming a model layer blob by digest."""
    manifests = root / "manifests"
    if not manifests.is_dir():
        return
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        parts = manifest.relative_to(manifests).parts
        if len(parts) != 4:
            continue
        try:
            layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers", [])
            digest = next(x["digest"] for x in layers if x.get("mediaType") == OLLAMA_MODEL_LAYER)
        except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError):
            continue
        blob = root / "blobs" / digest.replace(":", "-")
        if not _is_gguf(blob):
            continue
        registry, namespace, model, tag = parts
        name = f"{model}:{tag}" if namespace == "library" else f"{namespace}/{model}:{tag}"
        yield (name if registry == OLLAMA_DEFAULT_REGISTRY else f"{registry}/{name}"), blob


def _gguf_tree(root: Path):
    """LM Studio (publisher/repo/file.gguf) and plain folders: every GGUF below, named by its relative path."""
    for path in sorted(root.rglob("*.gguf")):
        if path.is_file() and "mmproj" not in path.name.lower() and _is_gguf(path):
            yield path.relative_to(root).as_posix(), path


def _hf_cache(root: Path):
    """HF hub cache: models--org--name/snapshots/<rev>/file.gguf, named org/name/file.gguf (newest first)."""
    for repo in sorted(root.glob("models--*")):
        repo_id = "/".join(repo.name.split("--")[1:])
        snapshots = sorted(
            (p for p in (repo / "snapshots").glob("*") if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        seen = set()
        for snapshot in snapshots:
            for path in sorted(snapshot.rglob("*.gguf")):
                rel = path.relative_to(snapshot).as_posix()
                if rel not in seen and "mmproj" not in rel.lower() and _is_gguf(path):
                    seen.add(rel)
                    yield f"{repo_id}/{rel}", path.resolve()


def describe(found: FoundModel) -> ModelInfo:
    """Read the GGUF header of a found model (architecture, quantization, template, trainability)."""
    import gguf

    from backends.gguf_export import SUPPORTED_ARCHS

    try:
        reader = gguf.GGUFReader(found.path)
        arch = str(reader.fields["general.architecture"].contents())
        file_type = reader.fields.get("general.file_type")
        if file_type is not None:
            quant = gguf.LlamaFileType(int(file_type.contents())).name.removeprefix("MOSTLY_")
        else:
            quant = max(
                {t.tensor_type.name for t in reader.tensors},
                key=[t.tensor_type.name for t in reader.tensors].count,
            )
        template = "tokenizer.chat_template" in reader.fields
        pooling = f"{arch}.pooling_type" in reader.fields
        base = _base_size(reader, arch, found.path)
    except Exception as exc:  # GGUFReader raises many kinds on a damaged file
        raise ModelError(f"{found.path} is not a readable GGUF model ({exc}).") from exc
    why = ""
    if pooling:
        why = (
            f"{found.name} is an embedding model; uno cannot learn on it (choose a chat model with --model)."
        )
    elif arch not in SUPPORTED_ARCHS:
        why = (
            f"uno cannot learn on {found.name}: its architecture {arch} is not supported for training "
            f"(supported: {', '.join(SUPPORTED_ARCHS)}); chat on it still works."
        )
    size = found.path.stat().st_size
    return ModelInfo(found, size, arch, quant, template, not why, why, base)


def _base_size(reader, arch: str, path: Path) -> BaseSize | None:
    """The sizes a retrain's memory estimate needs, from an open GGUF header (None without them)."""
    layers, width = reader.fields.get(f"{arch}.block_count"), reader.fields.get(f"{arch}.embedding_length")
    if layers is None or width is None:
        return None
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return BaseSize(
        n_params=sum(int(t.n_elements) for t in reader.tensors),
        n_vocab=len(tokens.data) if tokens is not None else 0,
        n_layer=int(layers.contents()),
        n_embd=int(width.contents()),
        file_bytes=path.stat().st_size,
    )


def learn_refusal(path: Path, config, available: int) -> str:
    """'' when adapters can be trained on the GGUF at `path` with `config` (TrainConfig) in `available`
    bytes of memory, else one sentence saying why not (the architecture, or both memory figures and what
    to change). One read of the GGUF header."""
    from uno_local.training import estimate_peak_bytes

    info = describe(FoundModel(path.name, path, "file"))
    if info.why_not or info.base is None:
        return info.why_not
    need = estimate_peak_bytes(info.base, config)
    if need <= available:
        return ""
    bf16 = "" if config.precision == "bf16" else 'set precision = "bf16" in [train] of uno.toml, '
    return (
        f"A retrain on {path.name} needs about {need / 1e9:.1f} GB of memory at its peak, but only "
        f"{available / 1e9:.1f} GB is free; close other programs, {bf16}lower max_forward_tokens in [train], "
        "or choose a smaller model."
    )


def resolve_model(name_or_path: str, folders: list[str] = ()) -> Path:
    """The GGUF file a `--model` value or `model.path` names: an existing or absolute path as it is, else
    a name `uno models` lists, else a relative path (the runtime then says it is missing)."""
    path = Path(name_or_path).expanduser()
    if path.exists() or path.is_absolute() or name_or_path.startswith((".", "~")):
        return path  # a path: the runtime names what is wrong with it
    matches = [m for m in find_models(folders) if m.name == name_or_path]
    if not matches and ":" not in name_or_path:  # Ollama's default tag
        matches = [m for m in find_models(folders) if m.name == f"{name_or_path}:latest"]
    if not matches:  # a bare file name found anywhere
        matches = [m for m in find_models(folders) if m.name.rsplit("/", 1)[-1] == name_or_path]
    if len(matches) > 1 and len({m.path.resolve() for m in matches}) > 1:
        names = ", ".join(m.name for m in matches)
        raise ModelError(f"More than one model is called {name_or_path} ({names}); pass one of those names.")
    if matches:
        return matches[0].path
    if "/" in name_or_path or os.sep in name_or_path:
        return path  # a relative path that is not there: the runtime says so
    places = ", ".join(str(p) for _, p in search_places(folders))
    raise ModelError(
        f"No model file or known model called {name_or_path}; looked in {places} "
        "(`uno models` lists what is found)."
    )


IDENTITY_CACHE = "model-identity.json"


def identity(path: Path, cache_dir: Path) -> str:
    """The weights' identity (`gguf_export.base_identity`) of the GGUF at `path`, remembered in
    `cache_dir` per file version (resolved path, size, modification time).

    Reading it parses every metadata field, the vocabulary included: seconds on a 2-core machine, paid
    once per model file instead of on every `uno status`, chat start and retrain. A cache that cannot
    be read or written only costs that time again.
    """
    from backends.gguf_export import read_identity
    from uno_local.atomic import atomic_write
    from uno_local.errors import OutputError

    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = cache_dir / IDENTITY_CACHE
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    value = known.get(key)
    if isinstance(value, str) and len(value) == 64:
        return value
    value = read_identity(path)
    kept = {k: v for k, v in known.items() if isinstance(v, str) and Path(k.split("|")[0]).exists()}
    kept[key] = value
    try:
        with atomic_write(cache) as out:
            json.dump(kept, out, indent=0)
    except OutputError:
        pass
    return value
